"""Training the ranker of retrieved impressions (model/ranker.py) with LightGBM's lambdarank.

Each train report is a query: its ``k`` most similar *other* train reports of the institution
(leave-one-out: itself and its own impression's count excluded) are the candidates, each labelled
by its ROUGE-L against the report's signed impression (model/scoring/rouge.py, the scorer used
everywhere), graded 0..``GRADES`` for lambdarank. The pool size ``k``, the number of leaves and
the number of trees are chosen on the validation split only (the candidates of a validation
report come from the whole train split, as a live draft's come from the whole history); the
chosen ranker is then refit on train + validation as one history and saved as a version
(model/ranker.py). ``train_ranker`` does all of it from signed cases, so the serving gate can
refit a ranker from storage.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.ranker import Ranker, save_ranker
from model.ranker_features import FEATURES, Candidate, candidates
from model.retrieval import CaseIndex
from model.scoring.rouge import score
from radflow.errors import TrainingError
from training import dataset as ds

log = logging.getLogger(__name__)

GRADES = 10
KS = (5, 10, 15)
LEAVES = (7, 15)
TREES = (50, 150, 400)
BASE_PARAMS = {"objective": "lambdarank", "learning_rate": 0.05, "min_data_in_leaf": 20, "feature_fraction": 0.9,
               "bagging_fraction": 0.8, "bagging_freq": 1, "lambdarank_truncation_level": 20, "verbose": -1,
               "num_threads": 1, "seed": 0, "deterministic": True}


@dataclass(frozen=True)
class Query:
    """One report's candidates and their R-L against its signed impression."""

    example: ds.Example
    candidates: list[Candidate]
    gains: list[float]


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
        out.append(Query(e, found, gains))
    return out


def _matrix(qs: Sequence[Query]) -> tuple[Any, list[int], list[int]]:
    import numpy as np

    rows = [c.features for q in qs for c in q.candidates]
    labels = [min(GRADES, int(round(g * GRADES))) for q in qs for g in q.gains]
    return np.asarray(rows, dtype=float).reshape(-1, len(FEATURES)), labels, [len(q.candidates) for q in qs]


def fit(qs: Sequence[Query], leaves: int, trees: int) -> Any:
    """A LightGBM lambdarank booster on these queries (those with one candidate teach nothing)."""
    import lightgbm as lgb

    useful = [q for q in qs if len(q.candidates) > 1]
    if not useful:
        raise TrainingError("no report has two or more candidate impressions: nothing to rank")
    x, y, group = _matrix(useful)
    data = lgb.Dataset(x, label=y, group=group, feature_name=list(FEATURES), free_raw_data=False)
    return lgb.train(BASE_PARAMS | {"num_leaves": leaves}, data, num_boost_round=trees)


def picked_gains(booster: Any, qs: Sequence[Query], trees: int | None = None) -> list[float]:
    """The R-L of the candidate the booster ranks first, per query (0 where there is none)."""
    import numpy as np

    x, _, group = _matrix(qs)
    predicted = booster.predict(x, num_iteration=trees) if len(x) else np.zeros(0)
    out, start = [], 0
    for q, n in zip(qs, group):
        out.append(q.gains[int(np.argmax(predicted[start : start + n]))] if n else 0.0)
        start += n
    return out


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


@dataclass(frozen=True)
class Selection:
    k: int
    leaves: int
    trees: int
    validation: dict[str, float]  # "k10-l7-t150" -> mean validation R-L, plus the controls
    booster: Any = None  # the chosen cell's booster, trained on the train split

    @property
    def cell(self) -> str:
        return f"k{self.k}-l{self.leaves}-t{self.trees}"


def select(train: Sequence[ds.Example], val: Sequence[ds.Example], ks: Sequence[int] = KS,
           leaves: Sequence[int] = LEAVES, trees: Sequence[int] = TREES) -> Selection:
    """The (k, leaves, trees) with the best mean validation R-L; the top-1 and the oracle
    (best of the k) recorded beside each k."""
    index = index_of(train)
    grid: dict[str, float] = {}
    boosters: dict[tuple[int, int], Any] = {}
    for k in ks:
        train_q, val_q = queries(train, index, k, True), queries(val, index, k, False)
        grid[f"k{k}-top1"] = mean([q.gains[0] if q.gains else 0.0 for q in val_q])
        grid[f"k{k}-oracle"] = mean([max(q.gains, default=0.0) for q in val_q])
        for n_leaves in leaves:
            boosters[(k, n_leaves)] = booster = fit(train_q, n_leaves, max(trees))
            for n_trees in trees:
                grid[f"k{k}-l{n_leaves}-t{n_trees}"] = mean(picked_gains(booster, val_q, n_trees))
        log.info("ranker validation, k=%d: %s", k, {n: round(v, 4) for n, v in grid.items() if n.startswith(f"k{k}-")})
    cells = [(k, n_leaves, n_trees) for k in ks for n_leaves in leaves for n_trees in trees]
    k, n_leaves, n_trees = max(cells, key=lambda c: (round(grid[f"k{c[0]}-l{c[1]}-t{c[2]}"], 6), -c[0], -c[2], -c[1]))
    booster = boosters[(k, n_leaves)]
    if n_trees < booster.num_trees():  # keep the chosen number of trees only
        import lightgbm as lgb

        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=n_trees))
    return Selection(k, n_leaves, n_trees, grid, booster)


def train_ranker(cases: Sequence[ds.Example], out_dir: Path, *, ks: Sequence[int] = KS,
                 leaves: Sequence[int] = LEAVES, trees: Sequence[int] = TREES, salt: str = "") -> Path:
    """A ranker from signed cases (institution, accession, findings, impression): split by the
    accession hash, chosen on validation, refit on train + validation, saved as the next version
    under ``out_dir`` (e.g. ``RADFLOW_HOME/rankers``). Returns the version's directory."""
    data = ds.build(cases, salt)
    if not data.train or not data.val:
        raise TrainingError(f"a ranker needs train and validation reports; got {data.counts()}")
    chosen = select(data.train, data.val, ks, leaves, trees)
    history = data.train + data.val
    booster = fit(queries(history, index_of(history), chosen.k, True), chosen.leaves, chosen.trees)
    ranker = Ranker(booster, chosen.k)
    window = {"reports": len(history), "institutions": sorted({e.institution for e in history}),
              "fingerprint": ds.Dataset(data.train, data.val, []).fingerprint(), "split_salt": salt}
    metrics = {"validation_rougeL": chosen.validation[chosen.cell],
               "validation_top1_rougeL": chosen.validation[f"k{chosen.k}-top1"],
               "validation_oracle_rougeL": chosen.validation[f"k{chosen.k}-oracle"], "grid": chosen.validation}
    return save_ranker(ranker, out_dir, window=window, metrics=metrics,
                       params={"leaves": chosen.leaves, "trees": chosen.trees, **BASE_PARAMS})
