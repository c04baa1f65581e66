"""The score agent: pairs each draft with its signed impression, whichever comes first, scores
the pair (``model.scoring``) and sends the score on, keyed by segment for the drift agent.

The pending pair lives in ``pending`` (the worker's Faust table, a dict in unit tests); a half it
lacks is looked up in storage (why: ``streams.pairing``). A cancelled exam (OBR-25 X) retracts its draft.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import faust

from ingest.events import ReportEvent, pair_key
from radflow.codes import ResultStatus
from storage.repository import Repository
from storage.tables import DraftRow, SignedReportRow
from streams import pairing
from streams.agents import Send, one_at_a_time
from streams.records import DraftRecord, ScoreRecord, row_of
from streams.stats import Stats
from streams.topics import TopicNames


@dataclass(frozen=True)
class ScoreDeps:
    repository: Repository
    pending: MutableMapping[str, Any]  # institution|accession -> streams.pairing.PendingPair.to_dict()
    send: Send  # to the scores topic, keyed by segment
    stats: Stats


def signed_row(event: ReportEvent) -> SignedReportRow:
    return row_of(event, SignedReportRow)


def _stored_halves(deps: ScoreDeps, pair: pairing.PendingPair, institution: str,
                   accession: str) -> pairing.PendingPair:
    """The halves the table lacks, from storage (after a recovery that stopped short)."""
    draft = signed = None
    if pair.draft is None and (row := deps.repository.get(DraftRow, institution, accession)) is not None:
        draft = pairing.DraftHalf.of(row)
        deps.stats["halves_from_storage"] += 1
    if pair.signed is None and (report := deps.repository.get(SignedReportRow, institution, accession)) is not None:
        if report.impression:
            signed = pairing.SignedHalf.of(report)
            deps.stats["halves_from_storage"] += 1
    return pair.with_halves(draft, signed)


async def score_one(deps: ScoreDeps, value: bytes | str) -> ScoreRecord | None:
    """Take one report or draft; returns the score when it completed (or re-completed) a pair."""
    payload = json.loads(value)
    draft_part = signed_part = None
    if payload.get("kind") == DraftRecord.kind:
        draft = DraftRecord.from_dict(payload)
        institution, accession = draft.institution, draft.accession
        draft_part = pairing.DraftHalf.of(draft)
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
        signed_part = pairing.SignedHalf.of(event)
    key = pair_key(institution, accession)
    pair = pairing.PendingPair.from_dict(deps.pending.get(key)).with_halves(draft_part, signed_part)
    if not pair.complete:
        pair = await asyncio.to_thread(_stored_halves, deps, pair, institution, accession)
    if not pair.complete:
        deps.pending[key] = pair.to_dict()
        return None
    pair, score = await asyncio.to_thread(pairing.score, pair, time.time())
    deps.pending[key] = pair.to_dict()
    await asyncio.to_thread(deps.repository.upsert, score.to_row())
    deps.stats["scored"] += 1
    await deps.send(TopicNames.segment_key(institution, score.body_system, score.adapter_version), score)
    return score


def score_agent(app: faust.App, reports_and_drafts: Any, deps: ScoreDeps) -> Any:
    return one_at_a_time(app, reports_and_drafts, "radflow.score", score_one, deps)
