"""`radflow demo`: everything on the embedded default, with a generated feed replayed over MLLP."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from ingest.mllp import MLLPClient, ack_code
from kernel.settings import Settings
from model.scoring.aggregate import ROUGE, pooled
from radflow.demodata import FeedItem, feed, generate_reports
from radflow.interrupts import Interrupts
from radflow.services import (
    ensure_model,
    start_listener,
    start_stack,
    wait_for_dashboard,
)
from storage.repository import Repository
from storage.tables import DraftRow, ScoreRow

log = logging.getLogger(__name__)

FEED_SEED = 11  # the bootstrap model trains on seed 7 (radflow.services): the feed is held out


async def replay(settings: Settings, items: list[FeedItem], progress: bool = True) -> dict[str, int]:
    """Send the feed over MLLP, one connection per institution (as each RIS has its own), and count
    the ACK codes."""
    from tqdm.auto import tqdm

    by_institution: dict[str, list[bytes]] = {}
    for item in items:
        by_institution.setdefault(item.report.institution, []).append(item.message)
    codes: dict[str, int] = {}
    bar = tqdm(total=len(items), desc="HL7 sent", unit="msg", disable=not progress)

    async def send(messages: list[bytes]) -> None:
        client = await MLLPClient.connect(settings.mllp_host, settings.mllp_port)
        try:
            for message in messages:
                code = ack_code(await client.send(message))
                codes[code] = codes.get(code, 0) + 1
                bar.update(1)
        finally:
            await client.close()

    await asyncio.gather(*(send(m) for m in by_institution.values()))
    bar.close()
    return codes


def wait_for_rows(repo: Repository, model: type, keys: set[tuple[str, str]], since: float, desc: str,
                  stall: float, progress: bool = True) -> int:
    """Wait while rows keep appearing; give up after ``stall`` seconds without progress."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(keys), desc=desc, unit="report", disable=not progress)
    last_progress = time.monotonic()
    done = 0
    while time.monotonic() - last_progress < stall:
        now_done = repo.count(model, keys, since=since)
        if now_done > done:
            done, last_progress = now_done, time.monotonic()
        bar.update(done - bar.n)
        if done >= len(keys):
            break
        time.sleep(0.5)
    bar.close()
    return done


def wait_for_charts(repo: Repository, keys: set[tuple[str, str]], settings: Settings, stall: float = 30.0) -> bool:
    """The drift agent closes a segment's windows after its scores are stored: wait until every
    full window of the demo's segments is closed, so the dashboard opens with every chart drawn.
    False when they stopped closing for ``stall`` seconds."""
    first, chunk = settings.drift_first_chunk, settings.drift_chunk
    window = first if 0 < first < chunk else chunk
    counted, last_progress = -1, time.monotonic()
    while time.monotonic() - last_progress < stall:
        per: dict[tuple[str, str], list[int]] = {}
        for row in repo.keyed_scores(keys):
            seen = per.setdefault((row.institution, row.body_system), [0, 0])
            seen[0] += 1
            seen[1] += row.drift_chunk >= 0
        if any(n > chunk for n, _ in per.values()):
            return True  # past the warm-up windows: what closes when is not modelled here
        now = sum(c for _, c in per.values())
        if now >= sum(n - n % window for n, _ in per.values()):
            return True
        if now > counted:
            counted, last_progress = now, time.monotonic()
        time.sleep(0.5)
    return False


def score_table(repo: Repository, keys: set[tuple[str, str]] | None = None) -> str:
    rows = repo.score_summary(keys=keys)
    lines = [f"{'institution':<12} {'n':>4} {'R-1':>6} {'R-2':>6} {'R-L':>6}", "-" * 38]
    for r in rows:
        lines.append(f"{r['institution']:<12} {r['n']:>4} {r['rouge1']:>6.3f} {r['rouge2']:>6.3f} {r['rougeL']:>6.3f}")
    if rows:
        mean = pooled(rows, ROUGE)
        n = int(mean["n"])
        lines.append("-" * 38)
        lines.append(f"{'all':<12} {n:>4} {mean['rouge1']:>6.3f} {mean['rouge2']:>6.3f} {mean['rougeL']:>6.3f}")
    return "\n".join(lines)


def run_demo(settings: Settings, per_segment: int = 6, wait: bool = True, progress: bool = True) -> int:
    interrupts = Interrupts().install()
    print(f"radflow demo: data in {settings.home.resolve()}")
    model_dir = ensure_model(settings, progress)
    # a pretrained base drafts a batch in a minute or more on a busy CPU, the bootstrap in a second
    stall = 120.0 if not settings.model_path else 900.0
    settings = dataclasses.replace(settings, model_path=str(model_dir))
    reports = generate_reports(per_segment, seed=FEED_SEED, start=1000)
    items = list(feed(reports, seed=FEED_SEED))
    keys = {(r.institution, r.accession) for r in reports}
    repo = Repository(settings.resolved_database_url)
    running = None
    scored = 0
    try:
        print("starting the broker and the worker ...")
        running = start_stack(settings, settings.home / "logs")
        interrupts.kill_children = running.kill
        url = wait_for_dashboard(settings, running.worker)
        since = time.time()

        async def ingest_and_replay() -> tuple[bool, dict[str, int] | None]:
            service = await start_listener(settings)
            try:
                return await interrupts.until_stopped(replay(settings, items, progress=progress))
            finally:
                await service.stop()  # the listener stops taking frames before the worker stops

        stopped, codes = asyncio.run(ingest_and_replay())
        if stopped or codes is None:
            raise KeyboardInterrupt
        print("ACKs:", ", ".join(f"{c} {n}" for c, n in sorted(codes.items())))
        drafted = wait_for_rows(repo, DraftRow, keys, since, "drafted", stall, progress)
        scored = wait_for_rows(repo, ScoreRow, keys, since, "scored", 60, progress)
        if scored == len(keys) and not wait_for_charts(repo, keys, settings):
            print(f"\nsome drift windows did not close; see {settings.home / 'logs' / 'worker.log'}")
        if drafted < len(keys) or scored < len(keys):
            print(f"\nstalled: {drafted} drafted and {scored} scored of {len(keys)}; "
                  f"see {settings.home / 'logs' / 'worker.log'}")
        print()
        print(score_table(repo, keys))
        print(f"\n{scored} of {len(keys)} reports drafted and scored. Dashboard: {url}")
        if wait:
            print("Press Ctrl-C to stop.", flush=True)
            while running.worker.poll() is None:
                time.sleep(0.5)
    except KeyboardInterrupt:  # "stopping ..." is printed by the signal handler
        if not wait or scored < len(keys):
            return 130  # interrupted before the demo had finished
    finally:
        if running is not None:
            running.stop()
    return 0 if scored == len(keys) else 1
