"""The quality worker's storage work per message, first time and replayed (issue #19), in one run.

Drives the agents' steps directly (no broker) on a real SQLite file in WAL mode, as the worker
does: each exam's draft stored with its P recorded as done; its F paired from storage and scored;
the draft record read after it (the pair unchanged); the score counted in its drift window. Then
the whole stream again, as a journal replay after a crash: every step a no-op. The ratio says what
a replayed message costs against a new one; the rows say what idempotence costs per message.

Usage: python bench/effects.py [--exams 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.events import ReportEvent  # noqa: E402
from radflow.demodata import generate_reports  # noqa: E402
from storage.processed import processed  # noqa: E402
from storage.repository import Repository  # noqa: E402
from streams.agents.drift import DriftDeps, watch_one  # noqa: E402
from streams.agents.score import ScoreDeps, score_one  # noqa: E402
from streams.records import DraftRecord  # noqa: E402
from streams.stats import new_stats  # noqa: E402


class Collect:
    def __init__(self) -> None:
        self.values: list[bytes] = []

    async def __call__(self, key: str, record: Any) -> None:
        self.values.append(record.to_json())


async def timed(items: list[Any], step: Callable[[Any], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    for item in items:
        await step(item)
    return len(items) / (time.perf_counter() - started)


async def run(exams: int) -> list[tuple[str, float, float]]:
    reports = generate_reports(-(-exams // 15), seed=5)[:exams]
    with tempfile.TemporaryDirectory() as tmp:
        repo = Repository(f"sqlite:///{Path(tmp) / 'bench.sqlite'}")
        scores, alerts = Collect(), Collect()
        score_deps = ScoreDeps(repo, {}, scores, new_stats())
        drift_deps = DriftDeps(repo, {}, alerts, chunk=20, reference_chunks=6)
        drafts = [DraftRecord(institution=r.institution, accession=r.accession, body_system=r.body_system,
                              language=r.language, findings=r.findings, draft=r.impression, model_id="bench")
                  for r in reports]
        finals = [ReportEvent(institution=r.institution, accession=r.accession, status="F", exam=r.exam,
                              exam_code=r.exam_code, body_system=r.body_system, modality=r.modality,
                              findings=r.findings, impression=r.impression, language=r.language,
                              message_control_id=f"F{n}").to_json() for n, r in enumerate(reports)]

        def store(d: DraftRecord) -> Awaitable[Any]:
            done = [processed(f"P{d.accession}", d.institution, d.accession, "P", "draft")]
            return asyncio.to_thread(repo.upsert, d.to_row(), done)

        steps: list[tuple[str, list[Any], Callable[[Any], Awaitable[Any]]]] = [
            ("draft stored, P done", drafts, store),
            ("F paired from storage, scored", finals, lambda v: score_one(score_deps, v)),
            ("draft record after it (unchanged)", [d.to_json() for d in drafts], lambda v: score_one(score_deps, v)),
        ]
        first = [await timed(items, step) for _, items, step in steps]
        first.append(await timed(list(scores.values), lambda v: watch_one(drift_deps, v)))
        replay = [await timed(items, step) for _, items, step in steps[1:]]  # a P replay is the drafter's check
        replay.append(await timed(list(scores.values), lambda v: watch_one(drift_deps, v)))
        assert repo.count(type(drafts[0].to_row())) == len(reports) and len(scores.values) == len(reports)
        repo.close()
    names = [name for name, _, _ in steps] + ["score counted in its drift window"]
    replay = [0.0, *replay]
    return list(zip(names, first, replay, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exams", type=int, default=2000)
    args = parser.parse_args()
    rows = asyncio.run(run(args.exams))
    print(f"| step ({args.exams} exams, SQLite WAL) | first time msg/s | replayed msg/s | replay / first |")
    print("|---|---:|---:|---:|")
    for name, first, replay in rows:
        ratio = f"{replay / first:.1f}x" if replay else "n/a"
        print(f"| {name} | {first:,.0f} | {replay:,.0f} | {ratio} |" if replay else f"| {name} | {first:,.0f} | | {ratio} |")


if __name__ == "__main__":
    main()
