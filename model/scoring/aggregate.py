"""Means of scores: the one definition of radflow's quality metrics over a set of reports.

A report contributes its three ROUGE F1 values and two 0/1 indicators: whether the draft missed
a finding, and whether it added one. Their means are the quality figures everywhere: the
dashboard's rolling means, the drift windows, the promotion gate, ``radflow eval`` and the demo.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

ROUGE = ("rouge1", "rouge2", "rougeL")
METRICS = (*ROUGE, "missed_rate", "over_rate")


class Scored(Protocol):
    """Anything with a report's scores: PairScore, storage's ScoreRow, a score record."""

    @property
    def rouge1(self) -> float: ...
    @property
    def rouge2(self) -> float: ...
    @property
    def rougeL(self) -> float: ...
    @property
    def missed(self) -> int: ...
    @property
    def over(self) -> int: ...


def observation(score: Scored) -> dict[str, float]:
    """One report's metrics (rates as 0/1 indicators)."""
    return {
        "rouge1": float(score.rouge1),
        "rouge2": float(score.rouge2),
        "rougeL": float(score.rougeL),
        "missed_rate": 1.0 if score.missed else 0.0,
        "over_rate": 1.0 if score.over else 0.0,
    }


def means(scores: Sequence[Scored]) -> dict[str, float]:
    """The mean of every metric, and ``n`` (as a float); zeros when there are no scores."""
    n = len(scores)
    totals = dict.fromkeys(METRICS, 0.0)
    for s in scores:
        for metric, value in observation(s).items():
            totals[metric] += value
    return {m: totals[m] / (n or 1) for m in METRICS} | {"n": float(n)}


def pooled(groups: Iterable[Mapping[str, float]], metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """Means over several groups' means, each weighted by its ``n``, as if scored together."""
    rows = [g for g in groups if g["n"]]
    n = sum(g["n"] for g in rows)
    return {m: sum(g[m] * g["n"] for g in rows) / (n or 1) for m in metrics} | {"n": float(n)}
