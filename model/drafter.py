"""Drafts impressions from findings, a batch at a time, with the paper's guards.

One base model is loaded once; LoRA adapters (a shared one and one per institution) are loaded
beside it and chosen per report, so one batch may mix institutions (peft's mixed-adapter
batches). Adapters are swapped between batches, never during one: ``set_adapters`` and
``draft`` run on the same model thread.

Where no adapter serves a report (day 0 of an institution) and the base is instruction-tuned (its
tokenizer has a chat template), the base drafts few-shot: the ``fewshot_k`` most similar signed
cases of the institution are worked examples in a chat (model/fewshot.py). Each draft records the
system that drafted it: ``base+fewshot-k3``, ``shared/v0002``, ``shared/v0002+cases-k1``.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kernel.codes import DraftGuard
from model import fewshot
from model.adapters import BASE, AdapterSpec, route
from model.cases import CaseSource as CaseIndex  # the protocol model.retrieval.CaseIndex implements
from model.guards import cut_repetition, is_empty, stop_at_labels
from model.loader import LoadedModel
from model.prompts import PromptTemplate, template_for
from model.serving import Decoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DraftRequest:
    institution: str
    accession: str
    findings: str
    language: str
    adapter: str | None = None  # a key of the loaded adapters, or BASE; None: route by institution
    body_system: str = ""  # with the institution, the segment whose serving system drafts it (model.systems)


@dataclass(frozen=True)
class Draft:
    text: str
    guard: str  # kernel.codes.DraftGuard: why the text was altered or replaced ("" when it was not)
    latency_ms: float
    model_id: str
    template_id: str
    adapter_version: str = ""  # the drafting system: "name/version" of the adapter (+cases), base+fewshot, "" base
    system: str = ""  # the serving system's registry name (model.systems), set by the segment router


class Drafter(Protocol):
    def draft(self, requests: list[DraftRequest]) -> list[Draft]: ...


class ModelDrafter:
    """Greedy decoding on a loaded causal LM; blocking, so callers run it off the event loop."""

    def __init__(self, loaded: LoadedModel, max_new_tokens: int = 96, max_input_tokens: int = 448,
                 retrieval: CaseIndex | None = None, retrieval_k: int = 0, fewshot_k: int = 0,
                 decode: str = "hf") -> None:
        self.loaded = loaded
        self.max_new_tokens = max_new_tokens
        self.max_input_tokens = max_input_tokens
        self.retrieval = retrieval
        self.retrieval_k = retrieval_k  # cases before the plain template prompt (adapters, non-chat bases)
        self.fewshot_k = fewshot_k  # worked examples in the chat prompt of an instruct base without adapter
        self.model = loaded.model  # becomes a PeftModel once an adapter is loaded
        self.serving: dict[str, AdapterSpec] = {}
        self.decoder = Decoder(decode)  # RADFLOW_DECODE: generate, or one of radflow's faster paths

    # -- adapters -----------------------------------------------------------------------------
    def set_adapters(self, wanted: Mapping[str, AdapterSpec]) -> list[str]:
        """Serve exactly ``wanted`` (key: "shared", an institution, or any slot name a request
        names). Loads the new versions, unloads the replaced ones; returns what changed."""
        changes = []
        for key, spec in wanted.items():
            current = self.serving.get(key)
            if current == spec:
                continue
            self._load(spec)
            self.serving[key] = spec
            changes.append(f"{key} -> {spec.label}")
        for key in [k for k in self.serving if k not in wanted]:
            changes.append(f"{key} -> base")
            del self.serving[key]
        self._unload_unused()
        if changes:
            log.info("adapters now serving: %s", ", ".join(changes))
        return changes

    def _load(self, spec: AdapterSpec) -> None:
        if self._has_slot(spec.slot):
            return
        from peft import PeftModel

        if self.model is self.loaded.model and not hasattr(self.model, "peft_config"):
            self.model = PeftModel.from_pretrained(self.loaded.model, str(spec.path), adapter_name=spec.slot)
        else:
            self.model.load_adapter(str(spec.path), adapter_name=spec.slot)
        self.model.eval()

    def _has_slot(self, slot: str) -> bool:
        return slot in getattr(self.model, "peft_config", {})

    def _unload_unused(self) -> None:
        used = {spec.slot for spec in self.serving.values()}
        for slot in [s for s in getattr(self.model, "peft_config", {}) if s not in used]:
            if len(self.model.peft_config) == 1:
                break  # peft keeps one adapter; an unused one costs memory only, requests pass BASE
            if self.model.active_adapter == slot:
                self.model.set_adapter(next(s for s in self.model.peft_config if s != slot))
            self.model.delete_adapter(slot)

    def _choose(self, request: DraftRequest) -> AdapterSpec | None:
        if request.adapter is not None:
            return None if request.adapter == BASE else self.serving[request.adapter]
        return route(request.institution, self.serving)

    # -- drafting -------------------------------------------------------------------------------
    def draft(self, requests: list[DraftRequest]) -> list[Draft]:
        if not requests:
            return []
        started = time.perf_counter()
        specs = [self._choose(r) for r in requests]
        templates = [template_for(r.language, s.template_family if s else self.loaded.template_family)
                     for r, s in zip(requests, specs)]
        prompts, truncated, systems = zip(*(self._prompt(t, r, s) for t, r, s in zip(templates, requests, specs)))
        slots = [s.slot if s else BASE for s in specs]
        texts = self._generate(list(prompts), slots, sample=False)
        # Guard 1: an empty draft is retried once with the paper's sampling settings...
        empty = [i for i, t in enumerate(texts) if is_empty(t)]
        if empty:
            retried = self._generate([prompts[i] for i in empty], [slots[i] for i in empty], sample=True)
            for i, text in zip(empty, retried):
                texts[i] = text
        per_item_ms = (time.perf_counter() - started) * 1000 / len(requests)
        drafts = []
        for i, (text, template, system) in enumerate(zip(texts, templates, systems)):
            guard = (DraftGuard.RETRIED_EMPTY if i in empty
                     else DraftGuard.TRUNCATED_INPUT if truncated[i] else DraftGuard.NONE)
            text, stopped = stop_at_labels(text, _labels(template))  # the model began another report
            text, looped = cut_repetition(text)  # Guard 2: repeated words and sentences
            if looped or stopped:
                guard = DraftGuard.REPETITION if looped else DraftGuard.STOPPED
            if is_empty(text):
                # ...then replaced by the impression of the most similar signed case, flagged.
                text, guard = self._retrieved(requests[i])
            drafts.append(Draft(text, guard, per_item_ms, self.loaded.model_id, template.id, system))
        return drafts

    def _retrieved(self, request: DraftRequest) -> tuple[str, DraftGuard]:
        if self.retrieval is not None:
            found = self.retrieval.similar(request.institution, request.findings, 1, exclude=request.accession)
            if found:
                return found[0].impression, DraftGuard.RETRIEVAL
        return "", DraftGuard.EMPTY

    def fewshot_active(self) -> bool:
        """Whether the base drafts few-shot (an instruct base, cases to draw on, k > 0)."""
        return bool(self.fewshot_k and self.retrieval is not None and fewshot.has_chat_template(self.loaded.tokenizer))

    def _prompt(self, template: PromptTemplate, request: DraftRequest,
                spec: AdapterSpec | None) -> tuple[str, bool, str]:
        """(prompt, findings cut, drafting system) within the input token limit: long findings
        lose their end, never the instruction or the impression label. With no adapter, an
        instruct base drafts in its chat template: few-shot when it has cases to draw on."""
        findings = request.findings
        if spec is None and fewshot.has_chat_template(self.loaded.tokenizer):
            # an instruct base with no adapter drafts in its chat template, with worked cases if any
            active = self.fewshot_active()
            cases = (self.retrieval.similar(request.institution, findings, self.fewshot_k, exclude=request.accession)
                     if active and self.retrieval is not None else [])
            shot = fewshot.render(self.loaded.tokenizer, template, findings, cases, self.max_input_tokens)
            return shot.text, shot.truncated, fewshot.system_label(self.fewshot_k) if active else ""
        system = spec.label if spec else ""
        if self.retrieval is not None and self.retrieval_k:
            system += f"+cases-k{self.retrieval_k}"
            cases = self.retrieval.similar(request.institution, findings, self.retrieval_k, exclude=request.accession)
            examples = "".join(f"{template.findings_label}{c.findings}\n{template.impression_label}{c.impression}\n"
                               for c in cases)
        else:
            examples = ""
        tok = self.loaded.tokenizer
        for _attempt in range(4):
            prompt = examples + template.render(findings)
            n = len(tok.encode(prompt, add_special_tokens=False)) + 1
            if n <= self.max_input_tokens:
                return prompt, findings != request.findings, system
            if examples:
                examples = ""  # retrieved cases go first
                continue
            findings = findings[: max(1, int(len(findings) * self.max_input_tokens / n) - 8)]
        return examples + template.render(findings), True, system

    def _generate(self, prompts: list[str], slots: list[str], sample: bool) -> list[str]:
        import torch

        tok, model = self.loaded.tokenizer, self.model
        bos = tok.bos_token or ""
        enc = tok(
            [p if p.startswith(bos) else bos + p for p in prompts],  # a chat template may write its own
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.max_input_tokens + 8,
            add_special_tokens=False,
        ).to(self.loaded.device)
        options: dict[str, Any] = (dict(do_sample=True, temperature=1.0, top_k=50, top_p=1.0) if sample
                                   else dict(do_sample=False))
        if sample:
            # Seeded by the prompts, so a retried draft is reproducible (this thread owns torch's RNG).
            torch.manual_seed(zlib.crc32("\x00".join(prompts).encode()))
        if hasattr(model, "peft_config"):
            options["adapter_names"] = slots
        with torch.inference_mode():
            new_tokens = self.decoder.generate(  # (batch, new) after the left-padded prompt
                model,
                enc,
                max_new_tokens=self.max_new_tokens,
                eos_token_id=self._stop_ids(),
                pad_token_id=tok.pad_token_id,
                **options,
            )
        # a byte-level tokenizer cut at max_new_tokens can end inside a character
        return [t.strip().rstrip("\ufffd").strip() for t in tok.batch_decode(new_tokens, skip_special_tokens=True)]

    def _stop_ids(self) -> list[int]:
        """The tokenizer's end token and the model's own (an instruct model's end of turn, which
        a GGUF-converted tokenizer may not name as its eos)."""
        config = getattr(self.loaded.model, "generation_config", None)
        declared = getattr(config, "eos_token_id", None)
        ids = [self.loaded.tokenizer.eos_token_id] + (declared if isinstance(declared, list) else [declared])
        return list(dict.fromkeys(i for i in ids if i is not None))


def _labels(template: PromptTemplate) -> list[str]:
    return [template.system, template.findings_label.strip(), template.impression_label.strip()]


class EchoDrafter:
    """A fake for unit tests: the last sentence of the findings (also a trivial baseline)."""

    model_id = "echo"

    def draft(self, requests: list[DraftRequest]) -> list[Draft]:
        out = []
        for r in requests:
            sentences = [s for s in r.findings.replace("。", "。\n").replace(". ", ".\n").split("\n") if s.strip()]
            out.append(Draft(sentences[-1].strip() if sentences else "", "", 0.0, self.model_id, "none"))
        return out
