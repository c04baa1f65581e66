"""Journal designs for the acknowledgement path: how many messages a second can be made durable
(fsync'd) before their ACK, with N concurrent MLLP connections each waiting for its own.

- sqlite, commit per message: WAL, synchronous=FULL, one transaction (one fsync) per message.
- sqlite, group commit: the same file, radflow's ingest.journal.Journal: the messages that arrived
  while the last commit ran share the next one.
- segment file, fsync per message: append-only file, os.fdatasync after each record.
- segment file, group fsync: the same, one fdatasync for the records that arrived together.

Each row: messages/s and the latency of one append (p50/p99), 2 KB messages (a report's size).
Usage: python bench/journal.py [--messages 2000] [--senders 1,16,64] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.journal import Entry, Journal  # noqa: E402

PAYLOAD = os.urandom(1024).hex().encode()  # 2 KB: an ORU^R01 with findings and impression


def entry(n: int) -> Entry:
    return Entry(f"X|{n}", "reports", f"X|A{n}", PAYLOAD[:600], PAYLOAD, "score", "X", f"A{n}", time.time())


class SqlitePerMessage:
    def __init__(self, path: Path) -> None:
        self.thread = ThreadPoolExecutor(1)
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("CREATE TABLE e (seq INTEGER PRIMARY KEY, v BLOB, r BLOB)")

    def _write(self, e: Entry) -> None:
        self.conn.execute("BEGIN")
        self.conn.execute("INSERT INTO e (v, r) VALUES (?, ?)", (e.value, e.raw))
        self.conn.execute("COMMIT")

    async def append(self, e: Entry) -> None:
        await asyncio.get_running_loop().run_in_executor(self.thread, self._write, e)

    def close(self) -> None:
        self.conn.close()
        self.thread.shutdown()


class Segment:
    """Length-prefixed records appended to one file; ``group`` shares one fdatasync per batch."""

    def __init__(self, path: Path, group: bool) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.group = group
        self.thread = ThreadPoolExecutor(1)
        self.waiting: list[tuple[bytes, asyncio.Future[None]]] = []
        self.writing = False

    def _write(self, records: list[bytes]) -> None:
        os.write(self.fd, b"".join(len(r).to_bytes(4, "big") + r for r in records))
        os.fdatasync(self.fd)

    async def append(self, e: Entry) -> None:
        record = e.value + e.raw
        loop = asyncio.get_running_loop()
        if not self.group:
            await loop.run_in_executor(self.thread, self._write, [record])
            return
        future: asyncio.Future[None] = loop.create_future()
        self.waiting.append((record, future))
        if not self.writing:
            self.writing = True
            asyncio.ensure_future(self._loop())
        await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self.waiting:
            batch, self.waiting = self.waiting, []
            await loop.run_in_executor(self.thread, self._write, [r for r, _ in batch])
            for _, f in batch:
                f.set_result(None)
        self.writing = False

    def close(self) -> None:
        os.close(self.fd)
        self.thread.shutdown()


async def run(append: Callable[[Entry], Awaitable[object]], total: int, senders: int) -> tuple[float, list[float]]:
    latencies: list[float] = []

    async def sender(ids: range) -> None:
        for n in ids:
            t = time.perf_counter()
            await append(entry(n))
            latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    await asyncio.gather(*(sender(range(i, total, senders)) for i in range(senders)))
    return total / (time.perf_counter() - started), sorted(latencies)


def designs(tmp: Path) -> list[tuple[str, Callable[[], tuple[Callable[[Entry], Awaitable[object]], Callable[[], None]]]]]:
    counter = iter(range(10**6))

    def sqlite_each():  # noqa: ANN202
        j = SqlitePerMessage(tmp / f"s{next(counter)}.sqlite")
        return j.append, j.close

    def sqlite_group():  # noqa: ANN202
        j = Journal(tmp / f"g{next(counter)}.sqlite", 1 << 34).open()
        return j.append, j.close

    def segment_each():  # noqa: ANN202
        s = Segment(tmp / f"f{next(counter)}.seg", group=False)
        return s.append, s.close

    def segment_group():  # noqa: ANN202
        s = Segment(tmp / f"h{next(counter)}.seg", group=True)
        return s.append, s.close

    return [("sqlite, commit per message", sqlite_each), ("sqlite, group commit (radflow)", sqlite_group),
            ("segment file, fsync per message", segment_each), ("segment file, group fsync", segment_group)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--senders", default="1,16,64")
    parser.add_argument("--dir", default="", help="where the files go (default: a temporary directory)")
    args = parser.parse_args()
    print(f"# journal designs ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, {args.messages} messages "
          "of 2 KB a row)\n")
    print("| design | senders | msg/s | append p50 ms | append p99 ms |\n|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(dir=args.dir or None) as tmp:
        rates: dict[tuple[str, int], float] = {}
        for name, make in designs(Path(tmp)):
            for senders in (int(s) for s in args.senders.split(",")):
                append, close = make()
                try:
                    rate, lat = asyncio.run(run(append, args.messages, senders))
                finally:
                    close()
                rates[(name, senders)] = rate
                p50, p99 = statistics.median(lat) * 1000, lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
                print(f"| {name} | {senders} | {rate:,.0f} | {p50:.2f} | {p99:.2f} |")
    top = max(int(s) for s in args.senders.split(","))
    g, e = rates[("sqlite, group commit (radflow)", top)], rates[("sqlite, commit per message", top)]
    print(f"\nat {top} senders: sqlite group commit / commit per message = {g / e:.1f}x; "
          f"group commit sqlite / segment file = {g / rates[('segment file, group fsync', top)]:.2f}x")


if __name__ == "__main__":
    main()
