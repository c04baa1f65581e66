"""The worker's bounded stop (streams.stopping), each path in a process of its own because it exits."""

from __future__ import annotations

import subprocess
import sys
import time

SCRIPT = """
import logging, signal, sys, time
logging.basicConfig(level=logging.INFO, stream=sys.stdout)
import faust
from streams.stopping import StoppingWorker
worker = StoppingWorker(faust.App("stop-test", broker="kafka://127.0.0.1:1"), grace=1.0, quiet=True)
worker._on_sigterm = lambda: None  # mode's graceful stop, hanging as it does on a broker that is gone
worker._on_stop_signal(signal.SIGTERM)
if sys.argv[1] == "twice":
    worker._on_stop_signal(signal.SIGTERM)
time.sleep(30)
print("still here")
"""


def _run(mode: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=60)
    return done, time.monotonic() - started


def test_a_stop_that_hangs_ends_after_the_grace_and_says_why() -> None:
    done, seconds = _run("once")
    assert done.returncode == 1 and "still here" not in done.stdout, done.stdout + done.stderr
    assert "did not stop within 1 s (a long draft batch, or the broker unreachable?)" in done.stdout
    assert seconds < 20  # 1 s of grace plus starting Python with faust


def test_a_second_signal_exits_at_once_and_says_so() -> None:
    done, _ = _run("twice")
    assert done.returncode == 1 and "second SIGTERM: exiting at once" in done.stdout, done.stdout + done.stderr
    assert "did not stop within" not in done.stdout


FAILED_START = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout)
import faust
from aiokafka.errors import NodeNotReadyError
from streams.stopping import StoppingWorker

async def broker_gone(self):  # what aiokafka raises when the broker dies under a topic creation
    raise NodeNotReadyError("Attempt to send a request to node which is not ready (node id 111).")

faust.Worker.start = broker_gone  # the parent's start: StoppingWorker.start wraps it
StoppingWorker(faust.App("start-test", broker="kafka://127.0.0.1:1"), grace=2.0, quiet=True).run()
"""


def test_a_broker_lost_while_starting_is_one_error_line_and_exit_code_1() -> None:
    done = subprocess.run([sys.executable, "-c", FAILED_START], capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "the broker went away while the worker was starting (NodeNotReadyError)" in output
    assert "RADFLOW_BROKER" in output and "Traceback" not in output
