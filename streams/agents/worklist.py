"""The worklist agent: each draft sent to its institution's RIS as a preliminary ORU^R01, and the
sweep that sends, from storage, every draft not delivered yet (issue #19).

An agent of its own, four sends at a time, so a slow or absent RIS never holds up drafting or
scoring. A send claims the draft in storage first (storage.deliveries), so the agent, the sweep
and a second quality worker never send one draft at once, and a draft delivered is never sent
again. Every send of one draft carries the same MSH-10 (``ingest.outbound.draft_control_id``):
should an ACK be lost, the RIS can tell the re-send for what it is. The outcome (the ACK code or
"failed") is stored on the draft; a failure is tried again by the sweep, backing off.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import faust

from ingest.outbound import draft_control_id, draft_oru
from kernel.codes import DELIVERED_ACKS, REJECTED_ACKS, Delivery
from storage.repository import Repository
from streams.agents import one_at_a_time
from streams.records import DraftRecord
from streams.stats import Stats
from streams.worklist import WorklistSender

log = logging.getLogger(__name__)

#: A claimed draft whose sender has not answered by then (it died mid-send) may be sent again.
LEASE_SECONDS = 60.0  # more than a send's worst case: 3 tries of 10 s and their backoff
#: Backoff of a failed draft: 5 s, doubling, at most 5 min between tries.
RETRY_FIRST, RETRY_MAX = 5.0, 300.0


@dataclass(frozen=True)
class WorklistDeps:
    sender: WorklistSender
    repository: Repository
    stats: Stats
    concurrency: int = 4
    sweep_every: float = 30.0  # RADFLOW_WORKLIST_SWEEP


def retry_delay(attempts: int) -> float:
    return min(RETRY_MAX, RETRY_FIRST * 2 ** max(0, attempts - 1))


async def deliver(deps: WorklistDeps, institution: str, accession: str) -> str | None:
    """Send the stored draft of one exam; the outcome, or None when there is nothing to send (no
    route, delivered or rejected already, retracted, in another sender's hands, backing off)."""
    if deps.sender.route(institution) is None:
        await asyncio.to_thread(deps.repository.mark_unrouted, institution, accession, time.time())
        return None
    draft = await asyncio.to_thread(deps.repository.claim_delivery, institution, accession, time.time(), LEASE_SECONDS)
    if draft is None or draft.id is None:
        return None
    control = draft_control_id(draft.institution, draft.accession, draft.draft, draft.created_at)
    message = draft_oru(draft.institution, draft.accession, draft.draft, draft.model_id, control_id=control,
                        system=draft.system)
    try:
        outcome = await deps.sender.send(institution, message)
    except asyncio.CancelledError:  # the worker stops: the draft is due again at once, not after the lease
        deps.repository.finish_delivery(draft.id, Delivery.FAILED, time.time(), 0.0)
        raise
    finished = outcome in DELIVERED_ACKS or outcome in REJECTED_ACKS
    deps.stats["worklist_delivered" if outcome in DELIVERED_ACKS else "worklist_failed"] += 1
    retry_at = 0.0 if finished else time.time() + retry_delay(draft.delivery_attempts)
    await asyncio.to_thread(deps.repository.finish_delivery, draft.id, outcome, time.time(), retry_at)
    return outcome


async def deliver_one(deps: WorklistDeps, value: bytes | str) -> str | None:
    """A draft record read from the drafts topic (read again after a restart, it sends nothing)."""
    draft = DraftRecord.from_json(value)
    return await deliver(deps, draft.institution, draft.accession)


async def sweep(deps: WorklistDeps) -> int:
    """Send every stored draft that is due (never delivered, failed and backed off, or claimed by
    a sender that died); returns how many were sent."""
    due = await asyncio.to_thread(deps.repository.undelivered, time.time())  # deliver() marks the unrouted
    gate = asyncio.Semaphore(deps.concurrency)

    async def one(key: tuple[str, str]) -> str | None:
        async with gate:
            return await deliver(deps, *key)

    sent = sum(outcome is not None for outcome in await asyncio.gather(*(one(k) for k in due)))
    deps.stats["worklist_swept"] += sent
    if sent:
        log.info("worklist sweep: sent %d stored drafts that had not been delivered", sent)
    return sent


def worklist_agent(app: faust.App, drafts: Any, deps: WorklistDeps) -> Any:
    return one_at_a_time(app, drafts, "radflow.worklist", deliver_one, deps, deps.concurrency)


def sweep_task(app: faust.App, deps: WorklistDeps) -> Any:
    """At start (drafts a stop or a crash left undelivered), then every ``sweep_every`` seconds."""

    async def sweep_worklist() -> None:
        while not app.should_stop:
            try:
                await sweep(deps)
            except Exception as exc:  # storage away for a moment: the next sweep tries again
                log.warning("worklist sweep failed (%s); trying again in %.0f s", type(exc).__name__, deps.sweep_every)
            await asyncio.sleep(deps.sweep_every)

    return app.task(sweep_worklist)
