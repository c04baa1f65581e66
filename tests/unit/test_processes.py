"""Child processes started by radflow: out of the terminal's process group, bounded stop, and
stopped by the kernel when their parent dies."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import pytest

from kernel import processes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups and prctl are Linux")

IGNORES_SIGTERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_spawned_child_has_its_own_session_so_ctrl_c_misses_it() -> None:
    child = processes.spawn([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert os.getsid(child.pid) == child.pid != os.getsid(0)
        assert os.getpgid(child.pid) != os.getpgid(0)
    finally:
        processes.stop(child, "sleeper", 5)
    assert child.returncode is not None


def test_stop_kills_a_child_that_ignores_sigterm_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    child = processes.spawn([sys.executable, "-c", IGNORES_SIGTERM], stdout=subprocess.PIPE)
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="kernel.processes"):
        processes.stop(child, "stubborn child", 0.5)
    assert time.monotonic() - started < 5
    assert child.returncode == -9
    assert "the stubborn child did not stop" in caplog.text and "killed it" in caplog.text
    child.stdout.close()


def test_a_killed_parent_takes_its_children_along() -> None:
    """PR_SET_PDEATHSIG: a parent killed with SIGKILL (no chance to clean up) leaves no orphan."""
    code = ("import sys, time; from kernel import processes; "
            "c = processes.spawn([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "print(c.pid, flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    assert parent.stdout is not None
    grandchild = int(parent.stdout.readline())
    assert _alive(grandchild)
    parent.kill()
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild), "the child outlived its killed parent"
