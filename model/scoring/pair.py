"""One draft scored against the signed impression: ROUGE and the findings diff together."""

from __future__ import annotations

from dataclasses import dataclass

from kernel.codes import language_of
from model.scoring import clinical, rouge


@dataclass(frozen=True)
class PairScore:
    """ROUGE F1 and the counts of missed and over-called findings (concept names, no report text)."""

    rouge1: float
    rouge2: float
    rougeL: float
    missed: int  # findings in the signed impression the draft lacks or negates
    over: int  # findings in the draft the signed impression lacks or negates
    missed_concepts: tuple[str, ...] = ()
    over_concepts: tuple[str, ...] = ()


def score_pair(draft: str, reference: str, language: str | None = None) -> PairScore:
    """Score ``draft`` against ``reference``; the language is read from both texts when unset."""
    language = language or language_of(reference + draft)
    r = rouge.score(draft, reference, language)
    diff = clinical.compare(draft, reference, language)
    return PairScore(r.rouge1, r.rouge2, r.rougeL, len(diff.missed), len(diff.over), diff.missed, diff.over)


def warm_up() -> None:
    """Load jieba and the stemmer before the first score (about a second)."""
    rouge.warm_up()
