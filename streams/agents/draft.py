"""The draft agent: preliminary reports in, drafts out (storage, then the drafts topic).

Reports are taken in batches (``draft_batch`` within ``draft_within`` seconds); the newest
event per exam wins. The model runs on one thread of its own, so inference never blocks the
event loop (timers, rebalances). Signed reports feed the retrieval index as they arrive.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import faust

from ingest.events import ReportEvent
from kernel.codes import DraftStatus, ResultStatus
from model.cases import CaseSource
from model.drafter import Drafter, DraftRequest
from storage.processed import processed
from storage.repository import Repository
from storage.tables import DraftRow, ProcessedMessageRow
from streams.agents import Send
from streams.records import DraftRecord
from streams.stats import Stats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DraftDeps:
    drafter: Drafter
    repository: Repository
    send: Send  # to the drafts topic, keyed institution|accession
    model_thread: Executor
    stats: Stats
    batch: int = 8
    within: float = 0.5
    cases: CaseSource | None = None  # signed cases feed the retrieval index as they arrive
    observe: Callable[[float, int], None] | None = None  # (model seconds, batch size) for /metrics


def read_batch(values: Iterable[bytes | str], cases: CaseSource | None) -> tuple[list[ReportEvent], list[ReportEvent]]:
    """(every preliminary report of a batch, those that get a draft: with findings, newest per exam)."""
    preliminary: list[ReportEvent] = []
    latest: dict[str, ReportEvent] = {}
    for value in values:
        event = ReportEvent.from_dict(json.loads(value))
        # Preliminary results get a draft; a signed one without findings has nothing to draft.
        if event.status == ResultStatus.PRELIMINARY:
            preliminary.append(event)
            if event.findings:
                latest[event.key] = event
        elif event.signed and cases is not None:
            cases.add(event.institution, event.accession, event.findings, event.impression)
    return preliminary, list(latest.values())


def done_row(event: ReportEvent) -> ProcessedMessageRow:
    return processed(event.message_id, event.institution, event.accession, event.status, "draft")


def already_drafted(repository: Repository, events: list[ReportEvent]) -> set[str]:
    """Keys of the events a replay brings again: the message is done, or the exam's draft was
    made from the same findings (a re-send without MSH-10), whether or not its exam was signed
    since (storage.pending marks it). Neither is drafted nor sent again; a retracted draft is."""
    done = repository.done(e.message_id for e in events)
    out = set()
    for event in events:
        row = None if event.message_id in done else repository.get(DraftRow, event.institution, event.accession)
        if event.message_id in done or (row is not None and row.findings == event.findings
                                        and row.status != DraftStatus.RETRACTED):
            out.add(event.key)
    return out


async def draft_batch(deps: DraftDeps, values: Iterable[bytes | str]) -> int:
    """Draft, store and send one batch; returns how many reports were drafted."""
    preliminary, todo = read_batch(values, deps.cases)
    if not preliminary:
        return 0
    replayed = await asyncio.to_thread(already_drafted, deps.repository, todo)
    todo = [e for e in todo if e.key not in replayed]
    drafted = {e.key for e in todo}
    # the preliminaries with nothing to draft (no findings, a newer P won, a replay) are done as they are
    await asyncio.to_thread(deps.repository.mark_processed, [done_row(e) for e in preliminary if e.key not in drafted])
    deps.stats["replays_skipped"] += len(replayed)
    if not todo:
        return 0
    requests = [DraftRequest(e.institution, e.accession, e.findings, e.language, body_system=e.body_system)
                for e in todo]
    started = time.perf_counter()
    results = await asyncio.get_running_loop().run_in_executor(deps.model_thread, deps.drafter.draft, requests)
    if deps.observe is not None:
        deps.observe(time.perf_counter() - started, len(requests))
    for event, result in zip(todo, results, strict=True):
        record = DraftRecord(
            institution=event.institution, accession=event.accession, body_system=event.body_system,
            language=event.language, findings=event.findings, draft=result.text, model_id=result.model_id,
            adapter_version=result.adapter_version, template_id=result.template_id, guard=result.guard,
            latency_ms=result.latency_ms, system=result.system,
        )
        done = [done_row(e) for e in preliminary if e.key == event.key]  # done with the draft, in its transaction
        await asyncio.to_thread(deps.repository.upsert, record.to_row(), done)  # stored before it is announced
        await deps.send(event.key, record)
    deps.stats["drafted"] += len(todo)
    log.info("drafted %d reports", len(todo))
    return len(todo)


def draft_agent(app: faust.App, reports: Any, deps: DraftDeps) -> Any:
    """Registers the agent on ``app`` reading the ``reports`` channel."""

    async def draft(stream: faust.StreamT) -> AsyncIterator[Any]:  # yields what each step did (tests read it)
        async for batch in stream.take(deps.batch, within=deps.within):
            yield await draft_batch(deps, batch)

    return app.agent(reports, name="radflow.draft", concurrency=1)(draft)
