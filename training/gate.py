"""Per-segment evaluation and the promotion gate.

The challenger and the champion draft the same held-out reports. The challenger is promoted only
if it wins overall (mean per-report ROUGE-L higher, paired approximate randomisation p < alpha),
no segment (institution × body system) with enough reports loses more than a margin of ROUGE-L,
and the missed-diagnosis rate does not rise beyond its margin.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from model.scoring.aggregate import means
from model.scoring.pair import PairScore, score_pair
from training.dataset import Example, by_segment
from training.recipe import Recipe

ReportScore = PairScore  # the name training's callers know
__all__ = ["Decision", "ReportScore", "SegmentResult", "decide", "means", "score_drafts"]


def score_drafts(examples: Sequence[Example], drafts: Sequence[str]) -> list[ReportScore]:
    """Each draft scored against its example's signed impression."""
    return [score_pair(text, e.impression, e.language) for e, text in zip(examples, drafts, strict=True)]


@dataclass(frozen=True)
class SegmentResult:
    institution: str
    body_system: str
    n: int
    challenger: dict[str, float]
    champion: dict[str, float]

    @property
    def delta(self) -> float:
        return self.challenger["rougeL"] - self.champion["rougeL"]


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    delta: float  # mean per-report ROUGE-L, challenger - champion
    p_value: float
    challenger: dict[str, float]
    champion: dict[str, float]
    segments: list[SegmentResult] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def approximate_randomisation(a: Sequence[float], b: Sequence[float], rounds: int, seed: int = 0) -> float:
    """Two-sided p-value of mean(a) - mean(b) for paired samples: swap each pair at random
    (Noreen 1989; the usual test for summarisation metrics)."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    if not diffs:
        return 1.0
    observed = abs(sum(diffs))
    rng = random.Random(seed)
    at_least = 0
    for _ in range(rounds):
        if abs(sum(d if rng.random() < 0.5 else -d for d in diffs)) >= observed - 1e-12:
            at_least += 1
    return (at_least + 1) / (rounds + 1)


def decide(examples: Sequence[Example], challenger: Sequence[ReportScore], champion: Sequence[ReportScore],
           recipe: Recipe) -> Decision:
    index = {id(e): i for i, e in enumerate(examples)}
    segments = []
    for (institution, body_system), group in sorted(by_segment(examples).items()):
        rows = [index[id(e)] for e in group]
        segments.append(SegmentResult(institution, body_system, len(rows),
                                      means([challenger[i] for i in rows]), means([champion[i] for i in rows])))
    ch, cp = means(challenger), means(champion)
    delta = ch["rougeL"] - cp["rougeL"]
    p = approximate_randomisation([s.rougeL for s in challenger], [s.rougeL for s in champion],
                                  recipe.permutations, recipe.seed)
    regressed = [s for s in segments if s.n >= recipe.min_segment and s.delta < -recipe.margin]
    if not examples:
        verdict, reason = False, "no held-out reports to evaluate on"
    elif delta <= 0:
        verdict, reason = False, f"challenger does not beat the champion (ROUGE-L {delta:+.4f})"
    elif p >= recipe.alpha_level:
        verdict, reason = False, f"gain {delta:+.4f} is not significant (p={p:.3f} >= {recipe.alpha_level})"
    elif regressed:
        names = ", ".join(f"{s.institution}/{s.body_system} {s.delta:+.3f}" for s in regressed)
        verdict, reason = False, f"segments regress beyond {recipe.margin}: {names}"
    elif ch["missed_rate"] - cp["missed_rate"] > recipe.missed_margin:
        verdict, reason = False, (f"missed-diagnosis rate rises {cp['missed_rate']:.3f} -> {ch['missed_rate']:.3f}")
    else:
        verdict, reason = True, f"ROUGE-L {delta:+.4f} (p={p:.3f}); no segment regresses"
    return Decision(verdict, reason, delta, p, ch, cp, segments)
