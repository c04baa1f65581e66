"""Consensus among similar signed cases: the impression that agrees most with the others.

Among the impressions of the ``k`` most similar signed cases of an institution, the draft is the
one with the highest mean ROUGE-L F1 against the other candidates (the same scorer as the
dashboard and the eval, jieba words for Chinese). No model: the candidates vote for the sentence
closest to what they share, which beats taking the nearest case when the nearest is an outlier.
Identical impressions count once as candidates but vote with their multiplicity, so a finding
signed the same way five times outweighs a one-off wording. Ties go to the better-ranked case.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from kernel.codes import DraftGuard
from model.cases import Case, CaseSource
from model.drafter import Draft, DraftRequest
from model.scoring.rouge import score


@dataclass(frozen=True)
class Voted:
    """One distinct candidate impression with its consensus score."""

    case: Case
    rank: int  # its best retrieval rank among the k (0 = nearest)
    count: int  # how many of the k cases signed this impression
    agreement: float  # mean R-L against the other k-1 candidates (duplicates included)


def vote(cases: Sequence[Case], language: str | None = None) -> list[Voted]:
    """Each distinct impression among ``cases`` (ordered nearest first) with its agreement,
    in retrieval order. A single candidate scores 1.0."""
    distinct: dict[str, tuple[int, Case]] = {}
    counts: dict[str, int] = {}
    for rank, case in enumerate(cases):
        text = case.impression.strip()
        if not text:
            continue
        distinct.setdefault(text, (rank, case))
        counts[text] = counts.get(text, 0) + 1
    total = sum(counts.values())
    out = []
    for text, (rank, case) in distinct.items():
        others = total - 1
        if others == 0:
            agreement = 1.0
        else:
            same = counts[text] - 1  # the identical copies agree fully
            cross = sum(score(text, other, language).rougeL * n for other, n in counts.items() if other != text)
            agreement = (same + cross) / others
        out.append(Voted(case, rank, counts[text], agreement))
    return out


def pick(cases: Sequence[Case], language: str | None = None) -> Voted | None:
    """The consensus candidate: highest agreement, then the nearer case."""
    voted = vote(cases, language)
    return max(voted, key=lambda v: (v.agreement, -v.rank)) if voted else None


class ConsensusDrafter:
    """A drafter (model.drafter.Drafter): the consensus impression among the ``k`` most similar
    signed cases of the same institution. ``k`` may be set per institution (chosen on
    validation); ``default_k`` serves the rest."""

    model_id = "consensus"

    def __init__(self, cases: CaseSource, default_k: int = 5, k_by_institution: dict[str, int] | None = None) -> None:
        if default_k < 1 or any(k < 1 for k in (k_by_institution or {}).values()):
            raise ValueError("k must be at least 1")
        self.cases, self.default_k = cases, default_k
        self.k_by_institution = dict(k_by_institution or {})

    def k_for(self, institution: str) -> int:
        return self.k_by_institution.get(institution, self.default_k)

    def label(self, institution: str) -> str:
        return f"consensus-k{self.k_for(institution)}"

    def draft(self, requests: list[DraftRequest]) -> list[Draft]:
        out = []
        for r in requests:
            started = time.perf_counter()
            found = self.cases.similar(r.institution, r.findings, self.k_for(r.institution), exclude=r.accession)
            chosen = pick(found, r.language or None)
            ms = (time.perf_counter() - started) * 1000
            text, guard = (chosen.case.impression, DraftGuard.NONE) if chosen is not None else ("", DraftGuard.EMPTY)
            out.append(Draft(text, guard, ms, self.model_id, "none", self.label(r.institution)))
        return out
