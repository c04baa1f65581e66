"""``radflow train --every 24h``: periodic refits of every adapter, and a refit of a segment's
adapter soon after a drift alert on it (at most once per ``drift_gap``)."""

from __future__ import annotations

import logging
import re
import threading
import time

from kernel.errors import TrainingError
from model.adapters import SHARED
from storage.repository import Repository
from training.refit import Refitter

log = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval(text: str) -> float:
    """"24h", "30m", "90s", "2d" or plain seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise TrainingError(f"--every {text!r} is not an interval like 24h, 30m, 90s or 2d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def run_schedule(refitter: Refitter, repository: Repository, every: float, stop: threading.Event,
                 poll: float = 30.0, drift_gap: float = 3600.0) -> None:
    """Refit everything now and every ``every`` seconds; between, watch for drift alerts."""
    seen = max((a.id or 0 for a in repository.alerts(limit=1)), default=0)  # only new alerts count
    last_drift: dict[str, float] = {}
    next_full = time.time()
    while not stop.is_set():
        now = time.time()
        if now >= next_full:
            for outcome in refitter.refit_all("schedule"):
                log.info("scheduled refit %s: %s", outcome.name, outcome.decision)
            next_full = now + every
        alerts = repository.alerts_after(seen)
        if alerts:
            seen = max(a.id or 0 for a in alerts)
            targets = set(refitter.targets(refitter.dataset(time.time())))
            for name in sorted({a.institution if a.institution in targets else SHARED for a in alerts}):
                if time.time() - last_drift.get(name, 0.0) >= drift_gap:
                    last_drift[name] = time.time()
                    outcome = refitter.refit(name, "drift")
                    log.info("drift-triggered refit %s: %s", outcome.name, outcome.decision)
        stop.wait(min(poll, max(0.0, next_full - time.time())))
