"""Bounded soak of the embedded setup: mixed HL7 traffic for a fixed time, then a report.

Starts the embedded broker, a worker and the MLLP listener (as `radflow serve` does), sends a
mix of preliminary, signed and corrected results, orders, ADT and unreadable frames at a target
rate for --minutes, and prints one row every --every seconds:
throughput, ACK latency percentiles, consumer lag (from the worker's /metrics), drafted and
scored so far, and resident memory of the broker, the worker and this process (listener and
senders). Traffic goes to loopback only and stops by itself.

Usage: python bench/soak.py [--minutes 30] [--rate 200] [--every 30]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.mllp import MLLPClient, ack_code  # noqa: E402
from kernel.settings import Settings  # noqa: E402
from radflow.demodata import feed, generate_reports, to_hl7  # noqa: E402
from radflow.services import ensure_model, start_listener, start_stack, wait_for_dashboard  # noqa: E402
from storage.repository import Repository  # noqa: E402
from storage.tables import DraftRow, ScoreRow  # noqa: E402
from tests.conftest import free_port  # noqa: E402

ADT = b"MSH|^~\\&|ADT|XIHE|RADFLOW|RADFLOW|20260105||ADT^A01|A{n}|P|2.5\rPID|1||SYN{n}\r"
JUNK = b"this is not HL7 {n}"


def rss_mb(pid: int | None) -> float:
    """Current resident memory of a process in MiB (Linux /proc); this process when pid is None."""
    pid = pid or os.getpid()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))] if sorted_values else 0.0


def lag(url: str) -> float:
    try:
        with urllib.request.urlopen(url + "metrics", timeout=2) as r:
            return sum(float(line.rsplit(" ", 1)[1]) for line in r.read().decode().splitlines()
                       if line.startswith("radflow_consumer_lag{") and "changelog" not in line)
    except OSError:
        return float("nan")


def traffic(seed: int):
    """An endless mix: P then F for each report, some corrections, orders, ADT, junk."""
    rng = random.Random(seed)
    n = 0
    while True:
        reports = generate_reports(4, seed=rng.randrange(1 << 30), start=n)
        n += 4
        # each round its own MSH-10s: a repeated control id is (rightly) acknowledged, not reprocessed
        for item in feed(reports, seed=rng.randrange(1 << 30), control_prefix=f"R{n}-"):
            yield item.message
            roll = rng.random()
            if roll < 0.03 and item.status == "F":
                yield to_hl7(item.report, "C", f"C{n}-{rng.randrange(10**9)}", datetime(2026, 1, 9))
            elif roll < 0.05:
                yield ADT.replace(b"{n}", str(rng.randrange(10**9)).encode())
            elif roll < 0.06:
                yield JUNK.replace(b"{n}", str(rng.randrange(10**9)).encode())


async def soak(settings: Settings, minutes: float, rate: float, every: float, worker_pid: int, broker_pid: int | None,
               url: str) -> None:
    service = await start_listener(settings)
    repo = Repository(settings.resolved_database_url)
    source = traffic(3)
    latencies: list[float] = []
    codes: dict[str, int] = {}
    sent = 0
    senders = 8
    deadline = time.monotonic() + minutes * 60
    interval = senders / rate

    async def sender() -> None:
        nonlocal sent
        client = await MLLPClient.connect(settings.mllp_host, service.server.port)
        try:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                ack = await client.send(next(source))
                latencies.append(time.perf_counter() - started)
                code = ack_code(ack) if ack else "--"
                codes[code] = codes.get(code, 0) + 1
                sent += 1
                await asyncio.sleep(max(0.0, interval - (time.perf_counter() - started)))
        finally:
            await client.close()

    async def reporter() -> None:
        print("| t (s) | msg/s | ACK p50 ms | p95 ms | p99 ms | lag | drafted | scored | RSS broker | RSS worker | RSS listener |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        begin, last_sent = time.monotonic(), 0
        while time.monotonic() < deadline + every:
            await asyncio.sleep(every)
            window, latencies[:] = sorted(latencies), []
            p50, p95, p99 = (percentile(window, q) * 1000 for q in (0.5, 0.95, 0.99))
            print(f"| {time.monotonic() - begin:.0f} | {(sent - last_sent) / every:.0f} | {p50:.1f} | {p95:.1f} | "
                  f"{p99:.1f} | {lag(url):.0f} | {repo.count(DraftRow)} | {repo.count(ScoreRow)} | "
                  f"{rss_mb(broker_pid) if broker_pid else 0:.0f} | {rss_mb(worker_pid):.0f} | {rss_mb(None):.0f} |",
                  flush=True)
            last_sent = sent
            if time.monotonic() > deadline:
                break

    try:
        await asyncio.gather(reporter(), *(sender() for _ in range(senders)))
    finally:
        await service.stop()
        repo.close()
    print(f"\nACK codes: {dict(sorted(codes.items()))}; messages sent: {sent}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=200.0, help="target messages per second (all senders)")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between report rows")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        settings = Settings.from_env({}, home=Path(home), embedded_broker_port=free_port(), mllp_port=free_port(),
                                     dashboard_port=free_port(), draft_batch=32, log_level="WARNING")
        cache = Settings.from_env({})  # reuse the demo's cached bootstrap model when there is one
        model = ensure_model(dataclasses.replace(cache, home=cache.home), progress=False)
        settings = dataclasses.replace(settings, model_path=str(model))
        stack = start_stack(settings, Path(home) / "logs")
        try:
            url = wait_for_dashboard(settings, stack.worker)
            asyncio.run(soak(settings, args.minutes, args.rate, args.every, stack.worker.pid,
                             stack.broker.process.pid if stack.broker and stack.broker.process else None, url))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
