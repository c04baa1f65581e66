"""The check a converted model passes before radflow accepts it.

A conversion can go wrong without an error: transformers' GGUF tokenizer conversion for Gemma 3
yields a tokenizer that spells English one character at a time, and the model then scores a loss
of about ln(vocabulary) on plain English. So a pulled model must (1) encode and decode the
sentences below back to themselves, (2) encode English as subwords, not characters, and (3) score
a per-token loss under a bound in each language. The sentences are invented, radiology-flavoured
and fixed, so losses are comparable between pulls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from radflow.errors import ModelError

SENTENCES: dict[str, tuple[str, ...]] = {
    "en": (
        "The chest radiograph shows no acute cardiopulmonary abnormality.",
        "There is a small left pleural effusion with adjacent atelectasis.",
        "The heart size is normal and the lungs are clear.",
        "No fracture or dislocation of the right wrist is seen.",
        "Impression: findings are consistent with community-acquired pneumonia in the right lower lobe.",
    ),
    "zh": (
        "双肺纹理清晰，未见明显实变影。",
        "右肺下叶见斑片状磨玻璃影，考虑感染性病变。",
        "心影大小正常，纵隔居中。",
        "肝脏形态大小正常，实质密度均匀。",
        "诊断意见：左侧少量胸腔积液。",
    ),
}


@dataclass(frozen=True)
class Bounds:
    """What a model must score to be accepted. Calibrated on SmolLM2-135M-Instruct pulled from
    its Q4_1 GGUF: mean loss per token 5.6 on the English sentences (radiology words are rare
    for a 135M model; a plain sentence scores 2-4) and 4.2 on the Chinese ones (byte-level there,
    about 1.5 tokens per character, so each token is easier to guess and the bound differs per
    language). Each bound leaves ~2 nats of margin over that model and stays well below what a
    broken conversion gives (≈ ln(vocabulary): 10.8 for a 49k vocabulary, 12.5 for 262k)."""

    max_loss: dict[str, float] = field(default_factory=lambda: {"en": 7.5, "zh": 6.0})
    #: English characters per token: ~4-5 for a subword tokenizer, ~1 when it falls back to characters
    min_en_chars_per_token: float = 2.5


DEFAULT_BOUNDS = Bounds()


@dataclass(frozen=True)
class SanityReport:
    losses: dict[str, float]  # mean loss per token, by language
    en_chars_per_token: float
    tokens: dict[str, int]  # tokens of the sentences, by language

    def as_dict(self) -> dict[str, Any]:
        return {"losses": {k: round(v, 4) for k, v in self.losses.items()},
                "en_chars_per_token": round(self.en_chars_per_token, 3), "tokens": self.tokens}


def check_tokenizer(tokenizer: Any, bounds: Bounds = DEFAULT_BOUNDS) -> float:
    """Round trips and English compression; returns English characters per token."""
    for sentences in SENTENCES.values():
        for text in sentences:
            ids = tokenizer.encode(text, add_special_tokens=False)
            back = tokenizer.decode(ids, skip_special_tokens=True)
            if back.strip() != text:
                raise ModelError(f"the tokenizer looks broken: {text[:24]!r}... decodes back as {back[:24]!r}...; "
                                 "refusing the model")
    en = SENTENCES["en"]
    n_tokens = sum(len(tokenizer.encode(t, add_special_tokens=False)) for t in en)
    ratio = sum(len(t) for t in en) / max(1, n_tokens)
    if ratio < bounds.min_en_chars_per_token:
        raise ModelError(f"the tokenizer looks broken: English encodes at {ratio:.2f} characters per token "
                         f"(a subword tokenizer gives {bounds.min_en_chars_per_token} or more); refusing the model")
    return ratio


def sentence_losses(model: Any, tokenizer: Any) -> tuple[dict[str, float], dict[str, int]]:
    """Mean loss per predicted token over each language's sentences, encoded as the tokenizer does
    by default (Gemma puts BOS first; SmolLM2's GGUF says not to, its BOS opens a chat turn)."""
    import torch

    losses, counts = {}, {}
    device = next(model.parameters()).device
    for language, sentences in SENTENCES.items():
        total, n = 0.0, 0
        for text in sentences:
            ids = tokenizer.encode(text)
            input_ids = torch.tensor([ids], device=device)
            with torch.inference_mode():
                loss = model(input_ids=input_ids, labels=input_ids).loss.item()
            total += loss * (len(ids) - 1)
            n += len(ids) - 1
        losses[language], counts[language] = total / n, n
    return losses, counts


def check_model(model: Any, tokenizer: Any, bounds: Bounds = DEFAULT_BOUNDS) -> SanityReport:
    """The report of a model that passes; a :class:`ModelError` saying what failed otherwise."""
    ratio = check_tokenizer(tokenizer, bounds)
    losses, counts = sentence_losses(model, tokenizer)
    for language, loss in losses.items():
        bound = bounds.max_loss[language]
        if not math.isfinite(loss) or loss > bound:
            raise ModelError(f"sanity check failed: loss {loss:.2f} per token on the {language} sentences is above "
                             f"{bound} (a broken tokenizer or conversion scores about ln(vocabulary) = "
                             f"{math.log(max(2, len(tokenizer))):.1f}); refusing the model")
    return SanityReport(losses, ratio, counts)
