"""The ranker refit from the signed reports in storage, before the systems gate runs
(`radflow import`, `radflow systems choose`): a new version under ``RADFLOW_HOME/rankers`` that
the gate (training/systems_gate.py) then tries as the challenger ``ranker`` on every segment.

- **Held out from training:** the reports the gate drafts to compare systems (``holdout`` per
  segment, the same hash and number as the gate), so a ranker is never judged on reports it was
  trained on.
- **Bounded cost:** at most ``max_reports`` of the rest, a stable sample by accession hash. The
  leave-one-out features dominate (pairwise ROUGE among up to 15 candidates per report, once per
  k of the validation grid and once for the refit); the trees take seconds.
- **Nothing new, nothing trained:** when the newest version was trained on exactly these reports
  (the fingerprint in its ``ranker.json``), it is kept.
- **Too few reports** (``min_reports``): no ranker; the gate runs without it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from model.ranker import RANKER_META, RANKER_NAME, latest_version
from training import dataset as ds
from training import ranker_train as rt
from training.systems_gate import holdout

log = logging.getLogger(__name__)

#: The ranker's validation split is salted: an archive imported as one split of the unsalted hash
#: (`radflow import --split train`, as docs/evaluation.md does) would otherwise have no validation.
SALT = "ranker"


@dataclass(frozen=True)
class Refit:
    """What the refit did: the version the challenger ``ranker`` now is (None: none), and why."""

    path: Path | None
    trained: bool
    reports: int
    seconds: float
    reason: str


def training_reports(examples: Sequence[ds.Example], holdout_n: int, max_reports: int) -> list[ds.Example]:
    """The signed reports a ranker trains on: all but each segment's gate hold-out, at most
    ``max_reports`` of them (by a hash of the accession, the same ones every run)."""
    held = {(e.institution, e.accession) for group in ds.by_segment(examples).values()
            for e in holdout(group, holdout_n)}
    pool = [e for e in examples if (e.institution, e.accession) not in held]
    if len(pool) <= max_reports:
        return pool

    def rank(e: ds.Example) -> str:
        return hashlib.sha256(f"ranker|{e.institution}|{e.accession}".encode()).hexdigest()

    return sorted(pool, key=rank)[:max_reports]


def _fingerprint(examples: Sequence[ds.Example]) -> str:
    data = ds.build(examples, SALT)  # the split train_ranker makes
    return ds.Dataset(data.train, data.val, []).fingerprint()


def refit_ranker(examples: Sequence[ds.Example], rankers: Path, *, min_reports: int, max_reports: int,
                 holdout_n: int) -> Refit:
    """Train the next ranker version under ``rankers`` (RADFLOW_HOME/rankers) from ``examples``
    unless too few or unchanged, with the validation grid of training/ranker_train.py."""
    started = time.perf_counter()
    reports = training_reports(examples, holdout_n, max_reports)
    latest = latest_version(rankers, RANKER_NAME)
    if min_reports < 1:
        return Refit(latest, False, len(reports), 0.0, "RADFLOW_RANKER_MIN_REPORTS=0: no ranker trained")
    if len(reports) < min_reports:
        return Refit(latest, False, len(reports), 0.0, f"{len(reports)} signed reports outside the gate's hold-out, "
                     f"fewer than RADFLOW_RANKER_MIN_REPORTS={min_reports}: no ranker trained")
    fingerprint = _fingerprint(reports)
    if latest is not None:
        window = json.loads((latest / RANKER_META).read_text(encoding="utf-8")).get("window", {})
        if window.get("fingerprint") == fingerprint:
            return Refit(latest, False, len(reports), time.perf_counter() - started,
                         f"{RANKER_NAME}/{latest.name} was trained on these {len(reports)} reports: kept")
    path = rt.train_ranker(reports, rankers, ks=rt.KS, leaves=rt.LEAVES, trees=rt.TREES, penalties=rt.PENALTIES,
                           salt=SALT)  # the grid read now: a test may narrow it
    seconds = time.perf_counter() - started
    log.info("ranker %s trained on %d signed reports in %.0f s", path.name, len(reports), seconds)
    return Refit(path, True, len(reports), seconds,
                 f"{RANKER_NAME}/{path.name} trained on {len(reports)} signed reports in {seconds:.0f} s")
