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
from model.cases import CaseSource
from model.drafter import Drafter, DraftRequest
from radflow.codes import ResultStatus
from storage.repository import Repository
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


def to_draft(values: Iterable[bytes | str], cases: CaseSource | None) -> list[ReportEvent]:
    """The reports of a batch that get a draft: preliminary with findings, newest per exam."""
    latest: dict[str, ReportEvent] = {}
    for value in values:
        event = ReportEvent.from_dict(json.loads(value))
        # Preliminary results get a draft; a signed one without findings has nothing to draft.
        if event.status == ResultStatus.PRELIMINARY and event.findings:
            latest[event.key] = event
        elif event.signed and cases is not None:
            cases.add(event.institution, event.accession, event.findings, event.impression)
    return list(latest.values())


async def draft_batch(deps: DraftDeps, values: Iterable[bytes | str]) -> int:
    """Draft, store and send one batch; returns how many reports were drafted."""
    todo = to_draft(values, deps.cases)
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
        await asyncio.to_thread(deps.repository.upsert, record.to_row())  # stored before it is announced
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
