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

from kernel.errors import ModelError

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
    """What a model must score to be accepted, as loss in nats per *character* of the sentences:
    per token would depend on the tokenizer (SmolLM2 spends ~2 byte-level tokens on a Chinese
    character, Gemma one token on a character or a word), per character compares models.
    Calibrated on SmolLM2-135M-Instruct from its Q4_1 GGUF: English 1.08, Chinese 8.0 (an
    English-only model: Chinese costs it far more, hence a bound per language). Gemma 3 270M
    scores lower on both. A tokenizer that falls back to characters costs about ln(vocabulary)
    per character (10.8 for 49k pieces, 12.5 for 262k), far above either bound."""

    max_loss: dict[str, float] = field(default_factory=lambda: {"en": 2.0, "zh": 10.0})
    #: English characters per token: ~4-5 for a subword tokenizer, ~1 when it falls back to characters
    min_en_chars_per_token: float = 2.5


DEFAULT_BOUNDS = Bounds()


@dataclass(frozen=True)
class SanityReport:
    losses: dict[str, float]  # nats per character, by language (what the bounds apply to)
    token_losses: dict[str, float]  # mean loss per predicted token, by language
    en_chars_per_token: float
    tokens: dict[str, int]  # predicted tokens of the sentences, by language

    def as_dict(self) -> dict[str, Any]:
        return {"losses_per_char": {k: round(v, 4) for k, v in self.losses.items()},
                "losses_per_token": {k: round(v, 4) for k, v in self.token_losses.items()},
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
    token_losses, counts = sentence_losses(model, tokenizer)
    per_char = {language: token_losses[language] * counts[language] / sum(len(t) for t in SENTENCES[language])
                for language in SENTENCES}
    for language, loss in per_char.items():
        bound = bounds.max_loss[language]
        if not math.isfinite(loss) or loss > bound:
            raise ModelError(f"sanity check failed: loss {loss:.2f} nats per character on the {language} sentences is "
                             f"above {bound} (a tokenizer falling back to characters costs about ln(vocabulary) = "
                             f"{math.log(max(2, len(tokenizer))):.1f}); refusing the model")
    return SanityReport(per_char, token_losses, ratio, counts)
