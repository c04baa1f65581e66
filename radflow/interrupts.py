"""Ctrl-C and SIGTERM for `radflow demo` and `radflow serve`: the first stops in order, the second at once.

The first signal asks for an orderly stop: the listener stops taking frames, the worker commits
and leaves its group, the broker goes last (radflow.services.Stack.stop). In plain code it raises
KeyboardInterrupt; while an event loop runs work through :meth:`Interrupts.until_stopped`, it
ends that work instead, because a KeyboardInterrupt thrown into asyncio's own machinery (or a
task cancelled half-way through closing the listener) can leave the loop waiting forever.

The second signal is the operator saying "now": the worker and broker are killed, this process
exits with 130, and it says so. Nothing acknowledged is lost: the listener ACKs a message only
once it is fsync'd in its journal, which sends on at the next start whatever storage does not
show done.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")

STOPPING = "\nstopping ... (Ctrl-C again stops at once)\n"
FORCED = "\nsecond signal: stopping at once (the worker and the broker are killed)\n"


class Interrupts:
    """Counts SIGINT and SIGTERM; install once at the start of an interactive command."""

    def __init__(self) -> None:
        self.count = 0
        self.kill_children: Callable[[], None] = lambda: None
        self._wake: Callable[[], object] | None = None

    def install(self) -> Interrupts:
        # SIGHUP too: a closed terminal stops in order (the children, in sessions of their own, get no SIGHUP)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count > 1:
            os.write(1, FORCED.encode())  # not print(): the main thread may be inside print already
            self.kill_children()
            os._exit(130)
        os.write(1, STOPPING.encode())
        if self._wake is not None:
            self._wake()
            return
        raise KeyboardInterrupt

    async def until_stopped(self, work: Awaitable[T]) -> tuple[bool, T | None]:
        """Runs ``work`` to its end, or until the first signal cancels it: (stopped, result)."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        task: asyncio.Future[T] = asyncio.ensure_future(work)
        waiter: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        self._wake = lambda: loop.call_soon_threadsafe(stop.set)
        try:
            await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._wake = None
            waiter.cancel()
        if task.done():
            return False, task.result()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        return True, None


async def until_exit(process: Any, every: float = 0.5) -> int:
    """Waits for a child process (Popen) to exit; its return code."""
    while process.poll() is None:
        await asyncio.sleep(every)
    return int(process.returncode)


async def until_first_exit(processes: dict[str, Any], every: float = 0.5) -> tuple[str, int]:
    """Waits until one of the named child processes (Popen) exits: its name and return code."""
    while True:
        for name, process in processes.items():
            if process.poll() is not None:
                return name, int(process.returncode)
        await asyncio.sleep(every)
