"""ROUGE-1/2/L F1, identical to the references the paper's numbers come from.

Chinese, as LLaMA-Factory computes it: jieba segmentation joined by spaces, then
``rouge_chinese``. That library splits sentences, counts each n-gram once (sets, its default
``exclusive=True``), takes ROUGE-L as the LCS over all words, and uses F = 2PR / (P + R + 1e-8).
English: ``rouge-score`` with the Porter stemmer. It lower-cases, keeps [a-z0-9] tokens, stems
tokens longer than 3 characters, counts n-grams with multiplicity, and uses F = 2PR / (P + R).

Punctuation: in Chinese, jieba makes each punctuation mark a word, so punctuation counts, exactly
as in the reference. In English, rouge-score's tokenizer drops it. An empty draft or reference
scores 0; rouge_chinese would raise.

This module re-implements both for speed. ROUGE-L is a bit-parallel LCS. Segmentation and stems
are cached, which is exact because both are deterministic. tests/unit/test_rouge_parity.py
asserts equality with the libraries.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from kernel.codes import Language, language_of

_EPS = 1e-8


@dataclass(frozen=True)
class Rouge:
    rouge1: float
    rouge2: float
    rougeL: float


ZERO = Rouge(0.0, 0.0, 0.0)


@lru_cache(maxsize=1)
def _jieba() -> Any:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    from nltk.stem import porter

    return porter.PorterStemmer()


def warm_up() -> None:
    """Load jieba's dictionary now rather than on the first score (about a second)."""
    _jieba()
    _stemmer()


# -- Chinese: jieba + rouge_chinese ------------------------------------------------------------
_SENT_RULES = (
    (re.compile("([。！？\\?])([^”’])"), r"\1\n\2"),
    (re.compile("(\\.{6})([^”’])"), r"\1\n\2"),
    (re.compile("(\\…{2})([^”’])"), r"\1\n\2"),
    (re.compile("([。！？\\?][”’])([^，。！？\\?])"), r"\1\n\2"),
)


@lru_cache(maxsize=200_000)
def segment_zh(text: str) -> str:
    """jieba tokens joined by spaces, as LLaMA-Factory feeds rouge_chinese.

    jieba cuts each block between punctuation on its own (``re_han_default.split``), so cutting
    block by block with a cache is exact. A new impression is mostly made of clauses seen before
    ("右肺上叶炎性病变", "建议随访"), so only its new clauses pay for jieba."""
    blocks = _jieba().re_han_default.split(text)
    return " ".join(word for block in blocks if block for word in _cut_block(block))


@lru_cache(maxsize=500_000)
def _cut_block(block: str) -> tuple[str, ...]:
    return tuple(_jieba().cut(block))


def _zh_words(joined: str) -> list[str]:
    para = joined
    for pattern, repl in _SENT_RULES:
        para = pattern.sub(repl, para)
    sentences = [" ".join(s.split()) for s in para.rstrip().split("\n") if len(s) > 0]
    return [w for s in sentences for w in s.split(" ")]


def _f(overlap: int, hyp_count: int, ref_count: int, eps: float) -> float:
    p = overlap / hyp_count if hyp_count else 0.0
    r = overlap / ref_count if ref_count else 0.0
    if eps:
        return 2.0 * ((p * r) / (p + r + eps))
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def lcs_length(a: list[str], b: list[str]) -> int:
    """LCS length by the bit-parallel method (Allison-Dix / Hyyrö): one big-int step per word."""
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for i, word in enumerate(a):
        masks[word] = masks.get(word, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for word in b:
        u = v & masks.get(word, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def _score_zh(draft: str, reference: str) -> Rouge:
    hyp_joined, ref_joined = segment_zh(draft), segment_zh(reference)
    if not hyp_joined.split() or not ref_joined.split():
        return ZERO
    hyp, ref = _zh_words(hyp_joined), _zh_words(ref_joined)
    out = []
    for n in (1, 2):
        h = {tuple(hyp[i : i + n]) for i in range(len(hyp) - n + 1)}
        r = {tuple(ref[i : i + n]) for i in range(len(ref) - n + 1)}
        out.append(_f(len(h & r), len(h), len(r), _EPS))
    out.append(_f(lcs_length(ref, hyp), len(hyp), len(ref), _EPS))
    return Rouge(*out)


# -- English: rouge-score with the Porter stemmer ---------------------------------------------
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


@lru_cache(maxsize=100_000)
def _stem(token: str) -> str:
    return _stemmer().stem(token) if len(token) > 3 else token


@lru_cache(maxsize=200_000)
def tokens_en(text: str) -> tuple[str, ...]:
    return tuple(_stem(t) for t in _NON_ALNUM.sub(" ", text.lower()).split() if t)


def _score_en(draft: str, reference: str) -> Rouge:
    hyp, ref = list(tokens_en(draft)), list(tokens_en(reference))
    if not hyp or not ref:
        return ZERO
    out = []
    for n in (1, 2):
        h = Counter(tuple(hyp[i : i + n]) for i in range(len(hyp) - n + 1))
        r = Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
        out.append(_f(sum((h & r).values()), sum(h.values()), sum(r.values()), 0.0))
    out.append(_f(lcs_length(ref, hyp), len(hyp), len(ref), 0.0))
    return Rouge(*out)


def score(draft: str, reference: str, language: str | None = None) -> Rouge:
    """ROUGE F1 of a draft against the signed impression (language from the reference if unset)."""
    language = language or language_of(reference)
    return _score_zh(draft, reference) if language == Language.ZH else _score_en(draft, reference)
