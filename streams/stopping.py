"""How a worker stops: in seconds, and saying so when it cannot stop cleanly.

A clean stop commits offsets, leaves the consumer group and flushes the producer; with the broker
reachable that takes a second or two. Three things made it long, and each is bounded here:

- the broker is gone: Faust then waits its request timeout (90 s) on every commit and on leaving
  the group; or a draft batch on a busy CPU outlasts the stop ("Wait for streams..."). A
  watchdog exits ``grace`` seconds after the first signal, with a warning. (The processes
  radflow starts itself keep the broker alive until the worker is gone; see radflow/processes.py.)
- a second SIGINT or SIGTERM: the operator wants out now. The worker exits at once and says so;
  what it had not committed is read again at its next start (at-least-once).
- after the event loop has closed, the interpreter's teardown of torch and transformers took
  about 4 s on two cores and does nothing a stopped worker needs, so it is skipped (os._exit)
  once the logs are flushed.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any, NoReturn

import faust

log = logging.getLogger(__name__)


def _exit_now(code: int) -> NoReturn:
    logging.shutdown()  # flushes every handler
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class StoppingWorker(faust.Worker):
    """A Faust worker whose stop is bounded in time; ``run`` never returns."""

    def __init__(self, *args: Any, grace: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.grace = grace
        self._stop_signals = 0

    def install_signal_handlers(self) -> None:
        super().install_signal_handlers()
        if sys.platform == "win32":
            return
        for sig in (signal.SIGINT, signal.SIGTERM):  # replaces mode's handlers; we call them below
            self.loop.add_signal_handler(sig, self._on_stop_signal, sig)

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        self._stop_signals += 1
        if self._stop_signals > 1:
            log.warning("second %s: exiting at once; uncommitted offsets are read again at the next start",
                        signal.Signals(sig).name)
            _exit_now(1)
        watchdog = threading.Timer(self.grace, self._give_up)
        watchdog.daemon = True
        watchdog.start()
        # mode's own handlers (public since mode 4; unchanged in mode-streaming 0.7): the graceful stop
        (self._on_sigint if sig == signal.SIGINT else self._on_sigterm)()

    def _give_up(self) -> None:
        log.warning("the worker did not stop within %.0f s (a long draft batch, or the broker unreachable?); "
                    "exiting without committing: what was not committed is read again at the next start", self.grace)
        _exit_now(1)

    def run(self) -> NoReturn:
        try:
            self.execute_from_commandline()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            _exit_now(code)
        _exit_now(0)
