"""Drafts impressions from findings, a batch at a time, with the paper's guards."""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from typing import Protocol

from model.guards import cut_repetition, is_empty
from model.loader import LoadedModel
from model.prompts import template_for


@dataclass(frozen=True)
class DraftRequest:
    institution: str
    accession: str
    findings: str
    language: str


@dataclass(frozen=True)
class Draft:
    text: str
    guard: str  # "" when the model's text is used as generated
    latency_ms: float
    model_id: str
    template_id: str
    adapter_version: str = ""


class Drafter(Protocol):
    def draft(self, requests: list[DraftRequest]) -> list[Draft]: ...


class ModelDrafter:
    """Greedy decoding on a loaded causal LM; blocking, so callers run it off the event loop."""

    def __init__(self, loaded: LoadedModel, max_new_tokens: int = 96, max_input_tokens: int = 448) -> None:
        self.loaded = loaded
        self.max_new_tokens = max_new_tokens
        self.max_input_tokens = max_input_tokens

    def draft(self, requests: list[DraftRequest]) -> list[Draft]:
        if not requests:
            return []
        started = time.perf_counter()
        templates = [template_for(r.language, self.loaded.template_family) for r in requests]
        prompts = [t.render(r.findings) for t, r in zip(templates, requests)]
        texts = self._generate(prompts, sample=False)
        # Guard 1: an empty draft is retried once with the paper's sampling settings.
        empty = [i for i, t in enumerate(texts) if is_empty(t)]
        if empty:
            retried = self._generate([prompts[i] for i in empty], sample=True)
            for i, text in zip(empty, retried):
                texts[i] = text
        per_item_ms = (time.perf_counter() - started) * 1000 / len(requests)
        drafts = []
        for i, (text, template) in enumerate(zip(texts, templates)):
            guard = "retried-empty" if i in empty else ""
            text, looped = cut_repetition(text)  # Guard 2: repeated words and sentences
            if looped:
                guard = "repetition"
            if is_empty(text):
                text, guard = "", "empty"
            drafts.append(Draft(text, guard, per_item_ms, self.loaded.model_id, template.id))
        return drafts

    def _generate(self, prompts: list[str], sample: bool) -> list[str]:
        import torch

        tok, model = self.loaded.tokenizer, self.loaded.model
        enc = tok(
            [tok.bos_token + p if tok.bos_token else p for p in prompts],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.max_input_tokens,
            add_special_tokens=False,
        ).to(self.loaded.device)
        options = dict(do_sample=True, temperature=1.0, top_k=50, top_p=1.0) if sample else dict(do_sample=False)
        if sample:
            # Seeded by the prompts, so a retried draft is reproducible (this thread owns torch's RNG).
            torch.manual_seed(zlib.crc32("\x00".join(prompts).encode()))
        with torch.inference_mode():
            out = model.generate(
                **enc,
                max_new_tokens=self.max_new_tokens,
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id,
                **options,
            )
        new_tokens = out[:, enc["input_ids"].shape[1] :]  # (batch, new) after the left-padded prompt
        return [t.strip() for t in tok.batch_decode(new_tokens, skip_special_tokens=True)]


class EchoDrafter:
    """A fake for unit tests: the last sentence of the findings (also a trivial baseline)."""

    model_id = "echo"

    def draft(self, requests: list[DraftRequest]) -> list[Draft]:
        out = []
        for r in requests:
            sentences = [s for s in r.findings.replace("。", "。\n").replace(". ", ".\n").split("\n") if s.strip()]
            out.append(Draft(sentences[-1].strip() if sentences else "", "", 0.0, self.model_id, "none"))
        return out
