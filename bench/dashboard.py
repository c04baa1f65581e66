"""The dashboard at a year of data: latency and the worker's memory against the number of scores.

Fills a store with N scores over 3 institutions × 6 body systems × 365 days (with their drafts,
signed reports and drift windows; the newest 100 drafts are left unsigned for the worklist),
bulk-loaded (executemany on SQLite, COPY on PostgreSQL). Then starts a real `radflow worker`
(role quality, on the embedded broker) on that store and requests `/`, `/api/summary`, the
drill-down `/pairs` and `/worklist` one after the other: p50 and p95 latency, and the worker's
peak resident memory (VmHWM) after starting and after the requests.

PostgreSQL is a throw-away server from the installed binaries (/usr/lib/postgresql/*/bin), run
as the postgres user on loopback, as the integration tests do.

Usage: python bench/dashboard.py [--scores 100000,1000000] [--databases sqlite,postgresql]
       [--requests 20] [--paths /,/api/summary] [--tree DIR]  (--tree: run the worker of another checkout, e.g. the code
       before the aggregates moved into SQL; the store is filled by this one)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlmodel import SQLModel  # noqa: E402

from kernel.broker import EmbeddedBroker  # noqa: E402
from kernel.codes import BODY_SYSTEMS  # noqa: E402
from kernel.settings import Settings  # noqa: E402
from storage import indexes  # noqa: E402
from storage.repository import Repository  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.postgres import server_binaries, throwaway_postgres  # noqa: E402

INSTITUTIONS = ("HUAXI", "MERCY", "XIHE")
DAYS = 365
START = 1_767_225_600.0  # 2026-01-01 UTC
UNSIGNED = 100  # newest drafts with no signed report: the worklist's rows
CHUNK = 20  # scores per drift window, the default RADFLOW_DRIFT_CHUNK
PATHS = ("/", "/api/summary", "/pairs?institution=XIHE&body_system=chest", "/worklist")
TARGET_MS = 200.0  # p95 of / and /api/summary
SWEEPS: list[dict[str, Any]] = []  # the sweep queries' timings of every store (sweeps())


def _values(table: Any, given: dict[str, Any]) -> tuple[Any, ...]:
    """A row in the table's column order: given values, else each column's scalar default (so a
    column added to the table later still loads)."""
    out = []
    for column in table.columns:
        if column.name == "id":
            continue
        if column.name in given:
            out.append(given[column.name])
        else:
            arg = getattr(column.default, "arg", None)
            out.append(None if callable(arg) else arg)
    return tuple(out)


def _rows(n: int) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """(table, row) for n scored reports and their drafts, signed reports and drift windows."""
    tables = SQLModel.metadata.tables
    rng = random.Random(22)
    step = DAYS * 86_400 / (n + UNSIGNED)
    counts: dict[tuple[str, str], int] = {}
    sums: dict[tuple[str, str], float] = {}
    band = json.dumps({m: [0.2, 0.8] for m in ("rouge1", "rouge2", "rougeL", "missed_rate", "over_rate")})
    for i in range(n + UNSIGNED):
        institution, system = rng.choice(INSTITUTIONS), rng.choice(BODY_SYSTEMS)
        at, accession = START + i * step, f"A{i:07d}"
        key = {"institution": institution, "accession": accession, "body_system": system, "language": "en"}
        delivered = {"delivery": "AA", "delivered_at": at - 590} if i < n else {}  # the newest wait for the RIS too
        yield "drafts", _values(tables["drafts"], {**key, "findings": "Lungs are clear.", "draft": "No acute disease.",
                                                   "created_at": at - 600, **delivered})
        if i >= n:
            continue
        yield "signed_reports", _values(tables["signed_reports"], {**key, "status": "F", "impression": "No acute finding.",
                                                                   "findings": "Lungs are clear.", "received_at": at})
        rouge_l = rng.random()
        yield "scores", _values(tables["scores"], {**key, "rouge1": rng.random(), "rouge2": rng.random(), "rougeL": rouge_l,
                                                   "missed": int(rng.random() < 0.2), "over": int(rng.random() < 0.1),
                                                   "created_at": at})
        segment = (institution, system)
        counts[segment] = counts.get(segment, 0) + 1
        sums[segment] = sums.get(segment, 0.0) + rouge_l
        if counts[segment] % CHUNK == 0:
            chunk = counts[segment] // CHUNK - 1
            mean = sums.pop(segment) / CHUNK
            yield "drift_chunks", _values(tables["drift_chunks"], {
                "institution": institution, "body_system": system, "chunk": chunk, "n": CHUNK, "rouge1": mean,
                "rouge2": mean, "rougeL": mean, "reference": chunk < 6, "bands": band if chunk >= 5 else "{}",
                "created_at": at})


def fill(url: str, n: int) -> None:
    """Create the tables (and indexes) by the Repository, then bulk-load n scores' rows."""
    Repository(url).close()
    repository = Repository(url)
    raw = repository.engine.raw_connection()
    try:
        batches: dict[str, list[tuple[Any, ...]]] = {}
        for table, row in _rows(n):
            batch = batches.setdefault(table, [])
            batch.append(row)
            if len(batch) >= 50_000:
                _load(raw, url, table, batch)
                batch.clear()
        for table, batch in batches.items():
            _load(raw, url, table, batch)
        raw.commit()
        if url.startswith("postgresql"):
            cursor = raw.cursor()
            cursor.execute("ANALYZE")
            cursor.close()
            raw.commit()
    finally:
        raw.close()
        repository.close()


def _load(raw: Any, url: str, table: str, rows: list[tuple[Any, ...]]) -> None:
    columns = [f'"{c.name}"' for c in SQLModel.metadata.tables[table].columns if c.name != "id"]  # rougeL
    cursor = raw.cursor()
    if url.startswith("sqlite"):
        cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows)
    else:
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    cursor.close()


def postgres() -> contextlib.AbstractContextManager[str]:
    """A throw-away PostgreSQL server (tests/postgres.py: trust authentication, loopback only)."""
    bindir = server_binaries()
    if bindir is None:
        raise SystemExit("PostgreSQL server binaries are absent (/usr/lib/postgresql/*/bin)")
    return throwaway_postgres(bindir)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def worker(url: str, broker: EmbeddedBroker, home: Path, tree: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A real `radflow worker` (quality role: no model) serving the dashboard on the store."""
    settings = Settings(home=home, broker=f"kafka://{broker.bootstrap_servers}", database_url=url,
                        dashboard_port=free_port(), mllp_port=0, partitions=1, worker_role="quality",
                        topic_prefix=f"b{uuid.uuid4().hex[:8]}", log_level="WARNING")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RADFLOW_")}, **settings.to_env()}
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "radflow", "worker"], env=env, cwd=tree, stdout=log,
                                   stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{settings.dashboard_port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the worker did not come up:\n" + log_path.read_text()[-3000:])
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2).close()
                break
            except OSError:
                time.sleep(0.3)
        yield process, base
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def timed(base: str, path: str, requests: int) -> tuple[float, float, int]:
    """p50 and p95 in ms of sequential requests (after one warm-up), and the body size."""
    latencies, size = [], 0
    for i in range(requests + 1):
        started = time.perf_counter()
        with urllib.request.urlopen(base + path, timeout=300) as response:
            size = len(response.read())
        if i:
            latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    return latencies[len(latencies) // 2], latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))], size


def run(database: str, n: int, requests: int, tree: Path, broker: EmbeddedBroker, work: Path,
        paths: list[str]) -> list[dict[str, Any]]:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres()) if database == "postgresql" else f"sqlite:///{work / f'{n}.sqlite'}"
        started = time.perf_counter()
        fill(url, n)
        print(f"# {database}: {n:,} scores loaded in {time.perf_counter() - started:.0f} s", flush=True)
        SWEEPS.extend(sweeps(database, url, n))
        process, base = stack.enter_context(worker(url, broker, work / f"{database}-{n}", tree))
        idle = peak_rss_mb(process.pid)
        out = []
        for path in paths:
            p50, p95, size = timed(base, path, requests)
            out.append({"database": database, "scores": n, "path": path, "p50": p50, "p95": p95, "bytes": size,
                        "idle_mb": idle, "peak_mb": peak_rss_mb(process.pid)})
            print(f"# {database} {n:,} {path}: p50 {p50:.1f} ms, p95 {p95:.1f} ms", flush=True)
        if database == "sqlite":
            Path(url.removeprefix("sqlite:///")).unlink()
        return out


def sweeps(database: str, url: str, n: int, calls: int = 5) -> list[dict[str, Any]]:
    """The workers' periodic sweeps on the store, in process (median of ``calls``): the stored-pairs
    sweep as it was (every pair, each minute) and as it is (what the last hour stored), and the
    worklist's due drafts with and without the index that answers it."""

    repository = Repository(url)
    newest = START + DAYS * 86_400

    def median_ms(call: Any) -> float:
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            call()
            times.append((time.perf_counter() - started) * 1000)
        return sorted(times)[len(times) // 2]

    out = [{"database": database, "scores": n, "query": "stored pairs, every pair (before)",
            "ms": median_ms(lambda: repository.unscored_pairs(500))},
           {"database": database, "scores": n, "query": "stored pairs, the last hour (now)",
            "ms": median_ms(lambda: repository.unscored_pairs(500, newest - 3600))},
           {"database": database, "scores": n, "query": "due drafts, with ix_drafts_delivery",
            "ms": median_ms(lambda: repository.undelivered(newest + 86_400))}]
    with repository.engine.begin() as connection:
        connection.exec_driver_sql("DROP INDEX ix_drafts_delivery")
    out.append({"database": database, "scores": n, "query": "due drafts, without it (before)",
                "ms": median_ms(lambda: repository.undelivered(newest + 86_400))})
    assert len(repository.undelivered(newest + 86_400)) == UNSIGNED, "the store's due drafts: its unsigned ones"
    indexes.ensure(repository.engine)  # the index back, for the worker
    repository.close()
    for row in out:
        print(f"# {database} {n:,} sweep {row['query']}: {row['ms']:.1f} ms", flush=True)
    return out


def report(results: list[dict[str, Any]]) -> None:
    print("\n| database | scores | path | p50 ms | p95 ms | response KB | worker peak RSS MB (idle → after) |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['database']} | {r['scores']:,} | `{r['path'].split('?')[0]}` | {r['p50']:.1f} | {r['p95']:.1f} | "
              f"{r['bytes'] / 1024:.0f} | {r['idle_mb']:.0f} → {r['peak_mb']:.0f} |")
    print("\n| database | scores | sweep query | median ms |")
    print("|---|---:|---|---:|")
    for r in SWEEPS:
        print(f"| {r['database']} | {r['scores']:,} | {r['query']} | {r['ms']:.1f} |")
    print("\n| database | path | p95 vs 200 ms target | p95 ratio largest / smallest store | peak RSS ratio |")
    print("|---|---|---:|---:|---:|")
    for database in sorted({r["database"] for r in results}):
        own = [r for r in results if r["database"] == database]
        small, large = min(r["scores"] for r in own), max(r["scores"] for r in own)
        for path in dict.fromkeys(r["path"] for r in own):
            a = next(r for r in own if r["path"] == path and r["scores"] == small)
            b = next(r for r in own if r["path"] == path and r["scores"] == large)
            print(f"| {database} | `{path.split('?')[0]}` | {b['p95'] / TARGET_MS:.2f} | {b['p95'] / a['p95']:.2f} | "
                  f"{b['peak_mb'] / a['peak_mb']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scores", default="100000,1000000", help="store sizes, comma-separated")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page")
    parser.add_argument("--paths", default=",".join(PATHS), help="pages to request, comma-separated")
    parser.add_argument("--tree", type=Path, default=ROOT, help="checkout whose worker serves the pages")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(free_port()) as broker:
        for database in args.databases.split(","):
            for n in (int(s) for s in args.scores.split(",")):
                results.extend(run(database, n, args.requests, args.tree.resolve(), broker, Path(tmp),
                                   args.paths.split(",")))
    report(results)


if __name__ == "__main__":
    main()
