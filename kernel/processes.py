"""Child processes (the embedded broker, the worker) that stop when, and in the order, their parent says.

A terminal's Ctrl-C sends SIGINT to its whole foreground process group. If the broker were in
that group it would die at once, and the worker would then spend its request timeout (90 s in
Faust) committing offsets and leaving its group against a broker that is gone. So children start
in a session of their own: Ctrl-C reaches only the parent, which stops the listener, then the
worker, then the broker. The kernel sends them SIGTERM if the parent dies without doing so
(PR_SET_PDEATHSIG), so a killed parent leaves no orphans.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with(parent: int) -> Callable[[], None] | None:
    """A preexec function that asks the kernel for SIGTERM when ``parent`` exits (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the line above: nobody will stop us
            os._exit(1)

    return preexec


def spawn(args: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """Popen outside the terminal's process group, stopped by the kernel if this process dies."""
    return subprocess.Popen(args, start_new_session=True, preexec_fn=_die_with(os.getpid()), **options)


def stop(process: subprocess.Popen[bytes], name: str, grace: float, force: bool = False) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds (saying so); ``force`` kills at once.

    A second Ctrl-C while waiting kills the process and is raised again, so the caller can stop
    the rest at once too.
    """
    if process.poll() is not None:
        return
    if force:
        process.kill()
        process.wait()
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        log.warning("the %s did not stop %.0f s after SIGTERM; killed it", name, grace)
        process.kill()
        process.wait()
    except KeyboardInterrupt:
        process.kill()
        process.wait()
        raise
