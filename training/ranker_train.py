"""Training the ranker of retrieved impressions (model/ranker.py) with LightGBM's lambdarank.

Each train report is a query: its ``k`` most similar *other* train reports of the institution
(leave-one-out: itself and its own impression's count excluded) are the candidates, each labelled
by its ROUGE-L against the report's signed impression (model/scoring/rouge.py, the scorer used
everywhere), less ``penalty`` for each finding of the impression it misses (the missed-finding
proxy of model/scoring/clinical.py), graded 0..``GRADES`` for lambdarank. The pool size ``k``,
the number of leaves and trees and the penalty are chosen on the validation split only: the best
R-L among the settings under which no institution (of ``MIN_SITE_REPORTS`` validation reports
or more) misses findings more often than with its nearest case (a site reads its own
missed-finding rate, not the pooled one; the candidates of a validation report come from the
whole train split, as a live draft's come from the whole history); the
chosen ranker is then refit on train + validation as one history and saved as a version
(model/ranker.py). ``train_ranker`` does all of it from signed cases, so the serving gate can
refit a ranker from storage.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernel.errors import TrainingError
from model.ranker import Ranker, save_ranker
from model.ranker_features import FEATURES, Candidate, candidates
from model.retrieval import CaseIndex
from model.scoring.clinical import compare
from model.scoring.rouge import score
from training import dataset as ds

log = logging.getLogger(__name__)

GRADES = 10
KS = (5, 10, 15)
LEAVES = (7, 15)
TREES = (50, 150, 400)
PENALTIES = (0.0, 0.1, 0.25)  # R-L a missed finding costs a candidate's training label
# an institution's own missed rate constrains the choice from this many validation reports on:
# on fewer, one report decides (its reports still count in the pooled rate)
MIN_SITE_REPORTS = 30
BASE_PARAMS = {"objective": "lambdarank", "learning_rate": 0.05, "min_data_in_leaf": 20, "feature_fraction": 0.9,
               "bagging_fraction": 0.8, "bagging_freq": 1, "lambdarank_truncation_level": 20, "verbose": -1,
               "num_threads": 1, "seed": 0, "deterministic": True}


@dataclass(frozen=True)
class Query:
    """One report's candidates and their R-L against its signed impression."""

    example: ds.Example
    candidates: list[Candidate]
    gains: list[float]
    missed: list[int]  # findings of the signed impression each candidate lacks (the missed proxy)


def index_of(examples: Iterable[ds.Example]) -> CaseIndex:
    index = CaseIndex()
    for e in examples:
        index.add(e.institution, e.accession, e.findings, e.impression)
    return index


def queries(examples: Sequence[ds.Example], index: CaseIndex, k: int, leave_one_out: bool) -> list[Query]:
    """Each report's candidates; ``leave_one_out`` for reports that are themselves in ``index``."""
    out = []
    for e in examples:
        found = candidates(index, e.institution, e.findings, e.language, k,
                           exclude=e.accession if leave_one_out else "",
                           own_impression=e.impression if leave_one_out else "")
        gains = [score(c.case.impression, e.impression, e.language or None).rougeL for c in found]
        missed = [len(compare(c.case.impression, e.impression, e.language).missed) for c in found]
        out.append(Query(e, found, gains, missed))
    return out


def _matrix(qs: Sequence[Query], penalty: float = 0.0) -> tuple[Any, list[int], list[int]]:
    """Features, graded labels (R-L less ``penalty`` per missed finding) and group sizes."""
    import numpy as np

    rows = [c.features for q in qs for c in q.candidates]
    labels = [max(0, min(GRADES, int(round((g - penalty * m) * GRADES)))) for q in qs for g, m in zip(q.gains, q.missed)]
    return np.asarray(rows, dtype=float).reshape(-1, len(FEATURES)), labels, [len(q.candidates) for q in qs]


def fit(qs: Sequence[Query], leaves: int, trees: int, penalty: float = 0.0) -> Any:
    """A LightGBM lambdarank booster on these queries (those with one candidate teach nothing);
    ``penalty``: what a missed finding costs a candidate's label, in R-L."""
    import lightgbm as lgb

    useful = [q for q in qs if len(q.candidates) > 1]
    if not useful:
        raise TrainingError("no report has two or more candidate impressions: nothing to rank")
    x, y, group = _matrix(useful, penalty)
    data = lgb.Dataset(x, label=y, group=group, feature_name=list(FEATURES), free_raw_data=False)
    return lgb.train(BASE_PARAMS | {"num_leaves": leaves}, data, num_boost_round=trees)


def picks(booster: Any, qs: Sequence[Query], trees: int | None = None) -> list[int | None]:
    """The index of the candidate the booster ranks first, per query (None where there is none)."""
    import numpy as np

    x, _, group = _matrix(qs)
    predicted = booster.predict(x, num_iteration=trees) if len(x) else np.zeros(0)
    out: list[int | None] = []
    start = 0
    for n in group:
        out.append(int(np.argmax(predicted[start : start + n])) if n else None)
        start += n
    return out


def outcome(qs: Sequence[Query], chosen: Sequence[int | None]) -> tuple[float, float]:
    """Mean R-L of the chosen candidates and the share of reports with a missed finding."""
    rl = mean([q.gains[j] if j is not None else 0.0 for q, j in zip(qs, chosen)])
    missed = mean([1.0 if j is None or q.missed[j] else 0.0 for q, j in zip(qs, chosen)])
    return rl, missed


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


Cell = tuple[int, int, int, float]  # k, leaves, trees, missed-finding penalty
_name = "k{}-l{}-t{}-p{}".format


def by_institution(qs: Sequence[Query], chosen: Sequence[int | None]) -> dict[str, tuple[float, float]]:
    """``outcome`` per institution."""
    rows: dict[str, list[int]] = {}
    for i, q in enumerate(qs):
        rows.setdefault(q.example.institution, []).append(i)
    return {inst: outcome([qs[i] for i in ix], [chosen[i] for i in ix]) for inst, ix in sorted(rows.items())}


@dataclass(frozen=True)
class Selection:
    k: int
    leaves: int
    trees: int
    penalty: float
    validation: dict[str, tuple[float, float]]  # "k10-l7-t150-p0.1" -> (mean R-L, missed rate); "k10-top1" too
    booster: Any = None  # the chosen cell's booster, trained on the train split
    # the same cells per institution: "k10-l7-t150-p0.1" -> institution -> (mean R-L, missed rate)
    by_institution: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    rule: str = ""  # which missed-finding constraint the chosen cell met (see ``choose``)

    @property
    def cell(self) -> str:
        return _name(self.k, self.leaves, self.trees, self.penalty)


def select(train: Sequence[ds.Example], val: Sequence[ds.Example], ks: Sequence[int] = KS,
           leaves: Sequence[int] = LEAVES, trees: Sequence[int] = TREES,
           penalties: Sequence[float] = PENALTIES) -> Selection:
    """The cell (k, leaves, trees, missed-finding penalty) that ``choose`` takes from the grid's
    validation figures, pooled and per institution. The top-1 and the oracle (best of the k) are
    recorded beside each k."""
    index = index_of(train)
    grid: dict[str, tuple[float, float]] = {}
    per_site: dict[str, dict[str, tuple[float, float]]] = {}
    boosters: dict[str, Any] = {}

    def record(name: str, qs: Sequence[Query], chosen: Sequence[int | None]) -> None:
        grid[name], per_site[name] = outcome(qs, chosen), by_institution(qs, chosen)

    for k in ks:
        train_q, val_q = queries(train, index, k, True), queries(val, index, k, False)
        record(f"k{k}-top1", val_q, [0 if q.candidates else None for q in val_q])
        record(f"k{k}-oracle", val_q, [max(range(len(q.gains)), key=q.gains.__getitem__) if q.gains else None
                                       for q in val_q])
        for n_leaves in leaves:
            for penalty in penalties:
                booster = fit(train_q, n_leaves, max(trees), penalty)
                for n_trees in trees:
                    boosters[name := _name(k, n_leaves, n_trees, penalty)] = booster
                    record(name, val_q, picks(booster, val_q, n_trees))
        log.info("ranker validation (R-L, missed), k=%d: %s", k,
                 {n: (round(v[0], 4), round(v[1], 3)) for n, v in grid.items() if n.startswith(f"k{k}-")})
    cells = [(k, n_leaves, n_trees, p) for k in ks for n_leaves in leaves for n_trees in trees for p in penalties]
    (k, n_leaves, n_trees, penalty), rule = choose(cells, grid, per_site, Counter(e.institution for e in val))
    booster = boosters[_name(k, n_leaves, n_trees, penalty)]
    if n_trees < booster.num_trees():  # keep the chosen number of trees only
        import lightgbm as lgb

        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=n_trees))
    return Selection(k, n_leaves, n_trees, penalty, grid, booster, per_site, rule)


def choose(cells: Sequence[Cell], grid: dict[str, tuple[float, float]],
           per_site: dict[str, dict[str, tuple[float, float]]], sizes: Mapping[str, int]) -> tuple[Cell, str]:
    """The cell with the best validation R-L under which no institution with ``MIN_SITE_REPORTS``
    validation reports (``sizes``) misses findings more often than with its nearest case
    (``k{k}-top1``), nor all of them together; failing that, the pooled rate no higher; failing
    that, any cell. Ties: the smaller k, fewer trees, fewer leaves, then the first in ``cells``
    (the smaller penalty). Returns the rule met: "each institution" only where at least one
    institution was large enough to be read on its own."""
    def no_more_missed(c: Cell, site: str | None) -> bool:
        top1 = f"k{c[0]}-top1"
        if site is None:
            return grid[_name(*c)][1] <= grid[top1][1] + 1e-9
        return per_site[_name(*c)][site][1] <= per_site[top1][site][1] + 1e-9

    sites = sorted(site for site, n in sizes.items() if n >= MIN_SITE_REPORTS)
    safe = [c for c in cells if no_more_missed(c, None) and all(no_more_missed(c, s) for s in sites)] if sites else []
    rule = "each institution"
    if not safe:
        rule, safe = "pooled", [c for c in cells if no_more_missed(c, None)]
    if not safe:
        rule, safe = "none met", list(cells)
    return max(safe, key=lambda c: (round(grid[_name(*c)][0], 6), -c[0], -c[2], -c[1])), rule


def train_ranker(cases: Sequence[ds.Example], out_dir: Path, *, ks: Sequence[int] = KS,
                 leaves: Sequence[int] = LEAVES, trees: Sequence[int] = TREES,
                 penalties: Sequence[float] = PENALTIES, salt: str = "") -> Path:
    """A ranker from signed cases (institution, accession, findings, impression): split by the
    accession hash, chosen on validation, refit on train + validation, saved as the next version
    under ``out_dir`` (e.g. ``RADFLOW_HOME/rankers``). Returns the version's directory."""
    data = ds.build(cases, salt)
    if not data.train or not data.val:
        raise TrainingError(f"a ranker needs train and validation reports; got {data.counts()}")
    chosen = select(data.train, data.val, ks, leaves, trees, penalties)
    history = data.train + data.val
    booster = fit(queries(history, index_of(history), chosen.k, True), chosen.leaves, chosen.trees, chosen.penalty)
    ranker = Ranker(booster, chosen.k)
    window = {"reports": len(history), "institutions": sorted({e.institution for e in history}),
              "fingerprint": ds.Dataset(data.train, data.val, []).fingerprint(), "split_salt": salt}
    metrics = {"validation_rougeL": chosen.validation[chosen.cell][0],
               "validation_missed_rate": chosen.validation[chosen.cell][1],
               "validation_top1_rougeL": chosen.validation[f"k{chosen.k}-top1"][0],
               "validation_top1_missed_rate": chosen.validation[f"k{chosen.k}-top1"][1],
               "validation_oracle_rougeL": chosen.validation[f"k{chosen.k}-oracle"][0], "grid": chosen.validation,
               "validation_by_institution": {name: chosen.by_institution[name]
                                             for name in (chosen.cell, f"k{chosen.k}-top1")},
               "missed_rule": chosen.rule}
    return save_ranker(ranker, out_dir, window=window, metrics=metrics,
                       params={"leaves": chosen.leaves, "trees": chosen.trees, "missed_penalty": chosen.penalty,
                               **BASE_PARAMS})
