"""The score agent: pairs each draft with its signed impression, whichever comes first, scores
the pair (``model.scoring``) and sends the score on, keyed by segment for the drift agent.

The pending half lives in ``pending`` (the worker's Faust table, a dict in unit tests); on a miss
it is looked up in storage (``streams.pairing``). A cancelled exam (OBR-25 X) retracts its draft.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import faust

from ingest.events import ReportEvent, pair_key
from radflow.codes import ResultStatus
from storage.processed import processed
from storage.repository import Repository
from storage.tables import DraftRow, ProcessedMessageRow, ScoreRow, SignedReportRow
from streams import pairing
from streams.agents import Send, one_at_a_time
from streams.records import DraftRecord, ScoreRecord
from streams.stats import Stats
from streams.topics import TopicNames

log = logging.getLogger(__name__)
#: How often the score agent looks for stored pairs without a score (and prunes processed messages).
PAIR_SWEEP_SECONDS = 60.0
#: How long a processed message is remembered: long after the journal released it and a RIS
#: re-sent it (minutes); a replay after that is still a no-op, only slower (storage compares texts).
PROCESSED_KEEP_SECONDS = 7 * 86400.0


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

    def scored_inputs(self, institution: str, accession: str) -> str | None:
        row = self.deps.repository.get(ScoreRow, institution, accession)
        return row.inputs if row is not None else None


def done_row(event: ReportEvent) -> ProcessedMessageRow:
    return processed(event.message_id, event.institution, event.accession, event.status, "score")


async def score_one(deps: ScoreDeps, value: bytes | str) -> ScoreRecord | None:
    """Take one report or draft; returns the score when it completed (or re-completed) a pair.

    Replays change nothing: a report already processed (storage.processed) is skipped, and a
    pair already scored from the same texts is not scored again (a correction's new text is)."""
    payload = json.loads(value)
    draft_part = signed_part = None
    done: list[ProcessedMessageRow] = []
    if payload.get("kind") == DraftRecord.kind:
        draft = DraftRecord.from_dict(payload)
        institution, accession = draft.institution, draft.accession
        draft_part = pairing.draft_half(draft)
    else:
        event = ReportEvent.from_dict(payload)
        if event.status == ResultStatus.PRELIMINARY:
            return None  # the draft agent's
        if await asyncio.to_thread(deps.repository.is_processed, event.message_id):
            deps.stats["replays_skipped"] += 1
            return None
        done = [done_row(event)]
        if not (event.signed or event.status == ResultStatus.CANCELLED):  # e.g. OBR-25 I or S: nothing to do
            await asyncio.to_thread(deps.repository.mark_processed, done)
            return None
        if event.status == ResultStatus.CANCELLED:
            deps.pending.pop(event.key, None)
            await asyncio.to_thread(deps.repository.retract, event.institution, event.accession, done)
            return None
        if not event.impression:
            await asyncio.to_thread(deps.repository.mark_processed, done)
            return None
        institution, accession = event.institution, event.accession
        await asyncio.to_thread(deps.repository.upsert, signed_row(event))
        signed_part = pairing.signed_from_event(event)
    key = pair_key(institution, accession)
    storage = _Storage(deps)
    result = await asyncio.to_thread(pairing.update, deps.pending.get(key), institution, accession,
                                     draft=draft_part, signed=signed_part, find_draft=storage.draft,
                                     find_signed=storage.signed, scored_inputs=storage.scored_inputs)
    if result.score is None:
        await asyncio.to_thread(deps.repository.mark_processed, done)  # the signed report is stored
        deps.pending[key] = result.entry
        deps.stats["pairs_unchanged"] += result.unchanged
        return None
    score = result.score
    row = score.to_row()
    row.inputs = result.inputs
    # a re-score (a correction) keeps the drift window that counted the exam: each exam counts once
    await asyncio.to_thread(deps.repository.upsert, row, done, ("drift_chunk",))
    deps.pending[key] = result.entry  # after storage: an entry that says "scored" is never ahead of it
    deps.stats["scored"] += 1
    await deps.send(TopicNames.segment_key(institution, score.body_system, score.adapter_version), score)
    return score


def score_agent(app: faust.App, reports_and_drafts: Any, deps: ScoreDeps) -> Any:
    return one_at_a_time(app, reports_and_drafts, "radflow.score", score_one, deps)


async def score_stored(deps: ScoreDeps) -> int:
    """Score the pairs storage holds both halves of but no score: their last half crossed a topic
    the broker lost (a broker restarted with its memory) after the message was done. Returns how
    many were scored. Outside a stream, where a Faust table cannot be written: storage answers."""
    deps, scored = dataclasses.replace(deps, pending={}), 0
    for row in await asyncio.to_thread(deps.repository.unscored_pairs):
        draft = DraftRecord(institution=row.institution, accession=row.accession, body_system=row.body_system,
                            language=row.language, findings=row.findings, draft=row.draft, model_id=row.model_id,
                            adapter_version=row.adapter_version, template_id=row.template_id, guard=row.guard,
                            latency_ms=row.latency_ms, created_at=row.created_at)
        scored += await score_one(deps, draft.to_json()) is not None
    if scored:
        log.info("scored %d stored pairs that had no score", scored)
    return scored


def stored_pairs_task(app: faust.App, deps: ScoreDeps) -> Any:
    """At start, then every PAIR_SWEEP_SECONDS."""

    async def score_stored_pairs() -> None:
        while not app.should_stop:
            try:
                await score_stored(deps)
                await asyncio.to_thread(deps.repository.forget_processed, time.time() - PROCESSED_KEEP_SECONDS)
            except Exception as exc:  # storage or the broker away for a moment: try again later
                log.warning("scoring stored pairs failed (%s)", type(exc).__name__)
            await asyncio.sleep(PAIR_SWEEP_SECONDS)

    return app.task(score_stored_pairs)
