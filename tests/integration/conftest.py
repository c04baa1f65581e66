"""Real parts: the embedded Tansu broker, a `radflow worker` subprocess with the tiny model,
the MLLP listener on a loopback socket, SQLite on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kernel.broker import EmbeddedBroker
from kernel.settings import Settings
from tests.conftest import free_port


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(free_port()) as b:
        yield b


@pytest.fixture
def settings(tmp_path: Path, broker: EmbeddedBroker, tiny_model: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        broker=f"kafka://{broker.bootstrap_servers}",
        model_path=str(tiny_model),
        database_url=f"sqlite:///{tmp_path / 'radflow.sqlite'}",
        dashboard_port=free_port(),
        mllp_port=0,
        partitions=2,
        topic_prefix=f"t{uuid.uuid4().hex[:8]}",  # topics of one test never meet another's
        draft_batch=4,
        draft_within=0.2,
        max_new_tokens=24,
        log_level="INFO",
    )


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str

    def stop(self, sig: int = 15) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return json.loads(response.read())


@pytest.fixture
def start_worker(settings: Settings) -> Iterator[Callable[[], Worker]]:
    started: list[Worker] = []

    def start(custom: Settings | None = None) -> Worker:
        run = custom or settings
        run.home.mkdir(parents=True, exist_ok=True)
        log_path = run.home / f"worker{len(started)}.log"
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("RADFLOW_")}, **run.to_env()}
        with log_path.open("wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "radflow", "worker"], env=env, stdout=log,
                                       stderr=subprocess.STDOUT)
        worker = Worker(process, log_path, f"http://127.0.0.1:{run.dashboard_port}")
        started.append(worker)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()[-3000:]
            try:
                urllib.request.urlopen(worker.url + "/healthz", timeout=2).close()
                return worker
            except OSError:
                time.sleep(0.3)
        raise AssertionError("worker did not come up:\n" + log_path.read_text()[-3000:])

    yield start
    for worker in started:
        worker.stop()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """wait_until for tests that serve something on their own event loop (a fake RIS)."""
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server started for the session (tests/postgres.py)."""
    from tests.postgres import server_binaries, throwaway_postgres

    bindir = server_binaries()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries are absent (Debian package postgresql)")
    with throwaway_postgres(bindir) as url:
        yield url
