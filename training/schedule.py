"""``radflow train --every 24h``: periodic refits of every adapter, and a refit of a segment's
adapter soon after a drift alert on it (at most once per ``drift_gap``). After each, the systems
gate chooses every segment's drafting system again (a new ranker version, a new adapter, or more
signed reports can change the winner)."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

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
                 poll: float = 30.0, drift_gap: float = 3600.0, choose: Callable[[], object] | None = None) -> None:
    """Refit everything now and every ``every`` seconds; between, watch for drift alerts. ``choose``
    (the systems gate's run) follows every round of refits."""
    seen = max((a.id or 0 for a in repository.alerts(limit=1)), default=0)  # only new alerts count
    last_drift: dict[str, float] = {}
    next_full = time.time()
    while not stop.is_set():
        now = time.time()
        if now >= next_full:
            for outcome in refitter.refit_all("schedule"):
                log.info("scheduled refit %s: %s", outcome.name, outcome.decision)
            _choose(choose, "schedule")
            next_full = now + every
        alerts = repository.alerts_after(seen)
        if alerts:
            seen = max(a.id or 0 for a in alerts)
            targets = set(refitter.targets(refitter.dataset(time.time())))
            refitted = False
            for name in sorted({a.institution if a.institution in targets else SHARED for a in alerts}):
                if time.time() - last_drift.get(name, 0.0) >= drift_gap:
                    last_drift[name] = time.time()
                    outcome = refitter.refit(name, "drift")
                    log.info("drift-triggered refit %s: %s", outcome.name, outcome.decision)
                    refitted = True
            if refitted:
                _choose(choose, "drift")
        stop.wait(min(poll, max(0.0, next_full - time.time())))


def _choose(choose: Callable[[], object] | None, trigger: str) -> None:
    if choose is None:
        return
    try:
        choose()
    except Exception as exc:  # a failed choice leaves every segment's system as it was; the next round tries again
        log.warning("choosing drafting systems after the %s refits failed (%s: %s)", trigger, type(exc).__name__, exc)
