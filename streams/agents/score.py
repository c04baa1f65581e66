"""The score agent: pairs each draft with its signed impression, whichever comes first, scores
the pair (``model.scoring``) and sends the score on, keyed by segment for the drift agent.

The pending half lives in ``pending`` (the worker's Faust table, a dict in unit tests); on a miss
it is looked up in storage (``streams.pairing``). A cancelled exam (OBR-25 X) retracts its draft.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import faust

from ingest.events import ReportEvent, pair_key
from radflow.codes import ResultStatus
from storage.processed import SCORE, mark_processed
from storage.repository import Repository
from storage.tables import DraftRow, SignedReportRow
from streams import pairing
from streams.agents import Send, one_at_a_time
from streams.records import DraftRecord, ScoreRecord
from streams.stats import Stats
from streams.topics import TopicNames


@dataclass(frozen=True)
class ScoreDeps:
    repository: Repository
    pending: MutableMapping[str, Any]  # institution|accession -> pairing entry (JSON)
    send: Send  # to the scores topic, keyed by segment
    stats: Stats


def signed_row(event: ReportEvent) -> SignedReportRow:
    fields = SignedReportRow.model_fields
    return SignedReportRow(**{k: v for k, v in vars(event).items() if k in fields and k != "id"})


class _Storage:
    """The halves storage holds, for pairs whose table entry came back short."""

    def __init__(self, deps: ScoreDeps) -> None:
        self.deps = deps

    def draft(self, institution: str, accession: str) -> dict[str, Any] | None:
        row = self.deps.repository.get(DraftRow, institution, accession)
        self.deps.stats["halves_from_storage"] += row is not None
        return pairing.draft_half(row) if row else None

    def signed(self, institution: str, accession: str) -> dict[str, Any] | None:
        row = self.deps.repository.get(SignedReportRow, institution, accession)
        found = row is not None and bool(row.impression)
        self.deps.stats["halves_from_storage"] += found
        return pairing.signed_from_row(row) if row and found else None


async def score_one(deps: ScoreDeps, value: bytes | str) -> ScoreRecord | None:
    """Take one report or draft; returns the score when it completed (or re-completed) a pair.
    A report's journal message is marked processed once all it caused is stored."""
    payload = json.loads(value)
    score = await _score_one(deps, payload)
    message_id = payload.get("message_id", "") if payload.get("kind") != DraftRecord.kind else ""
    if message_id:
        await asyncio.to_thread(mark_processed, deps.repository, [message_id], SCORE)
    return score


async def _score_one(deps: ScoreDeps, payload: dict[str, Any]) -> ScoreRecord | None:
    draft_part = signed_part = None
    if payload.get("kind") == DraftRecord.kind:
        draft = DraftRecord.from_dict(payload)
        institution, accession = draft.institution, draft.accession
        draft_part = pairing.draft_half(draft)
    else:
        event = ReportEvent.from_dict(payload)
        if event.status == ResultStatus.CANCELLED:
            deps.pending.pop(event.key, None)
            await asyncio.to_thread(deps.repository.retract, event.institution, event.accession)
            return None
        if not event.signed or not event.impression:
            return None
        institution, accession = event.institution, event.accession
        await asyncio.to_thread(deps.repository.upsert, signed_row(event))
        signed_part = pairing.signed_from_event(event)
    key = pair_key(institution, accession)
    storage = _Storage(deps)
    result = await asyncio.to_thread(pairing.update, deps.pending.get(key), institution, accession,
                                     draft=draft_part, signed=signed_part,
                                     find_draft=storage.draft, find_signed=storage.signed)
    deps.pending[key] = result.entry
    if result.score is None:
        return None
    score = result.score
    await asyncio.to_thread(deps.repository.upsert, score.to_row())
    deps.stats["scored"] += 1
    await deps.send(TopicNames.segment_key(institution, score.body_system, score.adapter_version), score)
    return score


def score_agent(app: faust.App, reports_and_drafts: Any, deps: ScoreDeps) -> Any:
    return one_at_a_time(app, reports_and_drafts, "radflow.score", score_one, deps)
