"""A trained ranker of retrieved impressions: the draft is the signed impression, among the ``k``
most similar cases of the institution, that a LightGBM lambdarank model ranks first.

The features (model/ranker_features.py) need no language model: retrieval scores, agreement
among the candidates, how often the institution signs each impression, lengths, second views of
similarity (character bigrams, the findings' R-L), the findings lexicon, and each candidate
against its pool. A ranker reads the features it was trained on, by name. Training is in
training/ranker_train.py (``train_ranker``).

On disk a ranker is a version directory beside the adapters, ``<home>/rankers/<name>/vNNNN/``
(``rankers_dir(settings.home)``; ``latest_version`` finds the newest):

- ``model.txt``: the LightGBM booster as text;
- ``ranker.json``: the feature list (in the booster's column order), ``k``, the training window
  (reports, institutions, fingerprint of the data), the validation metrics and the parameters.

Serving: ``RankerDrafter.load(path, cases)`` with the live case index (``model.retrieval.CaseIndex``,
or anything with ``scored``/``impression_count``/``size``); ``loaded`` is accepted and unused (no
model features yet), so the serving code can pass what it holds. Its drafts record
``adapter_version`` ``ranker/vNNNN`` (the directory's name and version).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernel.errors import ModelError
from model.adapters import next_version
from model.drafter import Draft, DraftRequest
from model.ranker_features import FEATURES, Candidate, ScoredCases, candidates

if TYPE_CHECKING:
    from model.loader import LoadedModel

RANKER_META = "ranker.json"
RANKER_MODEL = "model.txt"
RANKER_NAME = "ranker"


def rankers_dir(home: Path) -> Path:
    """Where rankers live under RADFLOW_HOME, beside ``adapters/``."""
    return Path(home) / "rankers"


def latest_version(out_dir: Path, name: str = RANKER_NAME) -> Path | None:
    """The newest saved version of ``name`` (the gate decides which one serves; this is the last trained)."""
    versions = sorted(p for p in (Path(out_dir) / name).glob("v[0-9]*") if (p / RANKER_META).is_file())
    return versions[-1] if versions else None


class Ranker:
    """A booster over the candidates' features, and the pool size it was trained for."""

    def __init__(self, booster: Any, k: int, features: tuple[str, ...] = FEATURES) -> None:
        unknown = [f for f in features if f not in FEATURES]
        if unknown:
            raise ModelError(f"ranker trained on features this code does not compute: {unknown}")
        if not features or len(set(features)) != len(features) or booster.num_feature() != len(features):
            raise ModelError(f"ranker's feature list ({len(features)} names) does not match its booster "
                             f"({booster.num_feature()} columns)")
        if k < 1:
            raise ValueError("k must be at least 1")
        self.booster, self.k, self.features = booster, k, tuple(features)
        # the columns the booster was trained on, in its order: a ranker from before a feature was added still serves
        self.columns: tuple[int, ...] = tuple(FEATURES.index(f) for f in features)

    def best(self, found: list[Candidate]) -> Candidate | None:
        """The candidate ranked first (ties: the nearer case)."""
        if len(found) <= 1:
            return found[0] if found else None
        import numpy as np

        predicted = self.booster.predict(np.asarray([c.features for c in found], dtype=float)[:, list(self.columns)])
        return max(zip(found, predicted), key=lambda cp: (float(cp[1]), -cp[0].rank))[0]


def save_ranker(ranker: Ranker, out_dir: Path, *, window: dict, metrics: dict, params: dict,
                name: str = RANKER_NAME) -> Path:
    """The ranker as the next version under ``out_dir/name``; returns the version's directory."""
    version = next_version(Path(out_dir), name)
    path = Path(out_dir) / name / version
    path.mkdir(parents=True)
    ranker.booster.save_model(str(path / RANKER_MODEL))
    meta = {"name": name, "version": version, "features": list(ranker.features), "k": ranker.k, "window": window,
            "metrics": metrics, "params": params, "created_at": time.time()}
    (path / RANKER_META).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def load_ranker(path: Path) -> tuple[Ranker, dict]:
    """A saved ranker and its metadata; a clear error when ``path`` is not one."""
    path = Path(path)
    meta_path, model_path = path / RANKER_META, path / RANKER_MODEL
    if not meta_path.is_file() or not model_path.is_file():
        raise ModelError(f"{path} is not a radflow ranker (needs {RANKER_META} and {RANKER_MODEL})")
    import lightgbm as lgb

    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    return Ranker(lgb.Booster(model_file=str(model_path)), int(meta["k"]), tuple(meta["features"])), meta


class RankerDrafter:
    """A drafter (model.drafter.Drafter): the impression the ranker ranks first among the ``k``
    most similar signed cases of the request's institution."""

    model_id = "ranker-lgbm"

    def __init__(self, ranker: Ranker, cases: ScoredCases, label: str = RANKER_NAME) -> None:
        self.ranker, self.cases, self.label = ranker, cases, label

    @classmethod
    def load(cls, path: Path, cases: ScoredCases, loaded: LoadedModel | None = None) -> RankerDrafter:
        ranker, meta = load_ranker(path)
        return cls(ranker, cases, f"{meta['name']}/{meta['version']}")

    def draft(self, requests: list[DraftRequest]) -> list[Draft]:
        out = []
        for r in requests:
            started = time.perf_counter()
            found = candidates(self.cases, r.institution, r.findings, r.language, self.ranker.k, exclude=r.accession)
            chosen = self.ranker.best(found)
            ms = (time.perf_counter() - started) * 1000
            text, guard = (chosen.case.impression, "") if chosen is not None else ("", "empty")
            out.append(Draft(text, guard, ms, self.model_id, "none", self.label))
        return out
