"""How a worker stops: in seconds, and saying so when it cannot stop cleanly.

A clean stop commits offsets, leaves the consumer group and flushes the producer; with the broker
reachable that takes a second or two. Three things made it long, and each is bounded here:

- the broker is gone: Faust then waits its request timeout (90 s) on every commit and on leaving
  the group; or a draft batch on a busy CPU outlasts the stop ("Wait for streams..."). A
  watchdog exits ``grace`` seconds after the first signal, with a warning. (The processes
  radflow starts itself keep the broker alive until the worker is gone; see kernel/processes.py.)
- the broker goes away while the worker is still starting (creating topics, joining its group):
  mode would print a traceback and then wait on the missing broker. One error line names the
  setting, and the worker exits with code 1 within the same grace.
- the broker is gone when the stop begins: aiokafka's fetcher then ends the consumer's thread on a
  cancelled fetch, and Python prints that thread's traceback. During a stop such an end is
  expected, so it becomes one warning line; any other thread error keeps its traceback.
- a second SIGINT or SIGTERM: the operator wants out now. The worker exits at once and says so;
  what it had not committed is read again at its next start (at-least-once).
- after the event loop has closed, the interpreter's teardown of torch and transformers took
  about 4 s on two cores and does nothing a stopped worker needs, so it is skipped (os._exit)
  once the logs are flushed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from typing import Any, NoReturn

import faust
from aiokafka.errors import KafkaError

from streams.faust_version import check_mode_version

log = logging.getLogger(__name__)


def _exit_now(code: int) -> NoReturn:
    logging.shutdown()  # flushes every handler
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class StoppingWorker(faust.Worker):
    """A Faust worker whose stop is bounded in time; ``run`` never returns."""

    def __init__(self, *args: Any, grace: float, **kwargs: Any) -> None:
        check_mode_version()  # the stop calls mode's private signal handlers (streams/faust_version.py)
        super().__init__(*args, **kwargs)
        self.grace = grace
        self._stop_signals = 0
        self._failed_start = False
        self._default_thread_hook = threading.excepthook
        threading.excepthook = self._thread_ended

    async def start(self) -> None:
        try:
            await super().start()
        except (TimeoutError, KafkaError, ConnectionError) as exc:
            log.error("the broker went away while the worker was starting (%s); check that it runs "
                      "(RADFLOW_BROKER) and start the worker again", type(exc).__name__)
            self._failed_start = True
            self._start_watchdog()  # stopping services may wait on the missing broker
            raise asyncio.CancelledError from exc  # mode ends a cancelled start quietly, then stops

    @property
    def _stopping(self) -> bool:
        return self._stop_signals > 0 or self._failed_start

    def _thread_ended(self, args: threading.ExceptHookArgs) -> None:
        broker_gone = isinstance(args.exc_value, (asyncio.CancelledError, KafkaError, ConnectionError))
        if self._stopping and broker_gone:
            name = args.thread.name if args.thread else "?"
            log.warning("thread %s ended on %s while stopping (the broker is unreachable)", name, args.exc_type.__name__)
            return
        self._default_thread_hook(args)

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
        self._start_watchdog()
        # mode's own handlers, private: the graceful stop (its release is checked in __init__)
        (self._on_sigint if sig == signal.SIGINT else self._on_sigterm)()

    def _start_watchdog(self) -> None:
        watchdog = threading.Timer(self.grace, self._give_up)
        watchdog.daemon = True
        watchdog.start()

    def _give_up(self) -> None:
        log.warning("the worker did not stop within %.0f s (a long draft batch, or the broker unreachable?); "
                    "exiting without committing: what was not committed is read again at the next start", self.grace)
        _exit_now(1)

    def run(self) -> NoReturn:
        try:
            self.execute_from_commandline()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            _exit_now(1 if self._failed_start else code)
        _exit_now(1 if self._failed_start else 0)
