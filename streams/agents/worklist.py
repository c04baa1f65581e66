"""The worklist agent: each draft sent to its institution's RIS as a preliminary ORU^R01.

An agent of its own, four sends at a time, so a slow or absent RIS never holds up drafting or
scoring. The outcome (the ACK code, "unrouted" or "failed") is stored on the draft.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import faust

from ingest.outbound import draft_oru
from radflow.codes import DELIVERED_ACKS
from storage.repository import Repository
from streams.agents import one_at_a_time
from streams.records import DraftRecord
from streams.stats import Stats
from streams.worklist import WorklistSender


@dataclass(frozen=True)
class WorklistDeps:
    sender: WorklistSender
    repository: Repository
    stats: Stats
    concurrency: int = 4


async def deliver_one(deps: WorklistDeps, value: bytes | str) -> str | None:
    """Send one draft; returns the outcome, or None when the institution has no route."""
    draft = DraftRecord.from_json(value)
    if deps.sender.route(draft.institution) is None:
        return None
    message = draft_oru(draft.institution, draft.accession, draft.draft, draft.model_id, system=draft.system)
    outcome = await deps.sender.send(draft.institution, message)
    deps.stats["worklist_delivered" if outcome in DELIVERED_ACKS else "worklist_failed"] += 1
    await asyncio.to_thread(deps.repository.set_delivery, draft.institution, draft.accession, outcome)
    return outcome


def worklist_agent(app: faust.App, drafts: Any, deps: WorklistDeps) -> Any:
    return one_at_a_time(app, drafts, "radflow.worklist", deliver_one, deps, deps.concurrency)
