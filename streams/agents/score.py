"""The score agent: pairs each draft with its signed impression, whichever comes first, scores
the pair (``model.scoring``) and sends the score on, keyed by segment for the drift agent.

The pending pair lives in ``pending`` (the worker's Faust table, a dict in unit tests); a half it
lacks is looked up in storage (why: ``streams.pairing``). A cancelled exam (OBR-25 X) retracts its draft.
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
from kernel.codes import ResultStatus
from storage.processed import processed
from storage.repository import Repository
from storage.tables import DraftRow, ProcessedMessageRow, ScoreRow, SignedReportRow
from streams import pairing
from streams.agents import Send, one_at_a_time
from streams.records import DraftRecord, ScoreRecord, row_of
from streams.stats import Stats
from streams.topics import TopicNames

log = logging.getLogger(__name__)
#: How often the score agent looks for stored pairs without a score (and prunes processed messages).
PAIR_SWEEP_SECONDS = 60.0
#: How far back each later sweep reads: the previous sweep's start less this. A signed report's
#: time is when the listener took it, which a backlog in the broker puts before its storing; a
#: pair lost with a broker's memory is found anyway by the full sweep at the restart that follows.
PAIR_SWEEP_OVERLAP = 3600.0
#: Pairs scored per sweep at most; a full sweep keeps its watermark, so the rest come next time.
PAIR_SWEEP_LIMIT = 500
#: How long a processed message is remembered: long after the journal released it and a RIS
#: re-sent it (minutes); a replay after that is still a no-op, only slower (storage compares texts).
PROCESSED_KEEP_SECONDS = 7 * 86400.0


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


def _scored_before(deps: ScoreDeps, pair: pairing.PendingPair) -> bool:
    """The pair was scored from these texts already: the table says so or, when it came back
    short or the pair was scored from storage by another path, the stored score's inputs do."""
    if pair.unchanged():
        return True
    signed = pair.signed
    if signed is None or pair.draft is None:
        return False
    row = deps.repository.get(ScoreRow, signed.institution, signed.accession)
    return pair.unchanged(row.inputs if row is not None else None)


def done_row(event: ReportEvent) -> ProcessedMessageRow:
    return processed(event.message_id, event.institution, event.accession, event.status, "score")


async def _signed_half(deps: ScoreDeps, event: ReportEvent, done: list[ProcessedMessageRow]) -> pairing.SignedHalf | None:
    """The half a signed report brings, once stored; None when the report pairs with nothing
    (then it is recorded done here: a cancel with its retraction, a status with nothing to do)."""
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
    await asyncio.to_thread(deps.repository.upsert, signed_row(event))
    return pairing.SignedHalf.of(event)


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
        draft_part = pairing.DraftHalf.of(draft)
    else:
        event = ReportEvent.from_dict(payload)
        if event.status == ResultStatus.PRELIMINARY:
            return None  # the draft agent's
        if await asyncio.to_thread(deps.repository.is_processed, event.message_id):
            deps.stats["replays_skipped"] += 1
            return None
        done = [done_row(event)]
        if (signed_part := await _signed_half(deps, event, done)) is None:
            return None
        institution, accession = event.institution, event.accession
    key = pair_key(institution, accession)
    pair = pairing.PendingPair.from_dict(deps.pending.get(key)).with_halves(draft_part, signed_part)
    if not pair.complete:
        pair = await asyncio.to_thread(_stored_halves, deps, pair, institution, accession)
    unchanged = pair.complete and await asyncio.to_thread(_scored_before, deps, pair)
    if not pair.complete or unchanged:
        await asyncio.to_thread(deps.repository.mark_processed, done)  # the signed report is stored
        deps.pending[key] = dataclasses.replace(pair, inputs=pair.digest if unchanged else pair.inputs).to_dict()
        deps.stats["pairs_unchanged"] += unchanged
        return None
    pair, score = await asyncio.to_thread(pairing.score, pair, time.time())
    row = score.to_row()
    row.inputs = pair.inputs or ""
    # a re-score (a correction) keeps the drift window that counted the exam: each exam counts once
    await asyncio.to_thread(deps.repository.upsert, row, done, ("drift_chunk",))
    deps.pending[key] = pair.to_dict()  # after storage: an entry that says "scored" is never ahead of it
    deps.stats["scored"] += 1
    await deps.send(TopicNames.segment_key(institution, score.body_system, score.adapter_version), score)
    return score


def score_agent(app: faust.App, reports_and_drafts: Any, deps: ScoreDeps) -> Any:
    return one_at_a_time(app, reports_and_drafts, "radflow.score", score_one, deps)


async def score_stored(deps: ScoreDeps, since: float = 0.0) -> int:
    """Score the pairs storage holds both halves of but no score: their last half crossed a topic
    the broker lost (a broker restarted with its memory) after the message was done. Returns how
    many were scored. Outside a stream, where a Faust table cannot be written: storage answers.
    ``since``: only pairs completed then or later (storage's time indexes; 0 reads them all)."""
    return await _score_rows(deps, await asyncio.to_thread(deps.repository.unscored_pairs, PAIR_SWEEP_LIMIT, since))


async def _score_rows(deps: ScoreDeps, rows: list[DraftRow]) -> int:
    deps, scored = dataclasses.replace(deps, pending={}), 0
    for row in rows:
        draft = DraftRecord(institution=row.institution, accession=row.accession, body_system=row.body_system,
                            language=row.language, findings=row.findings, draft=row.draft, model_id=row.model_id,
                            adapter_version=row.adapter_version, template_id=row.template_id, guard=row.guard,
                            latency_ms=row.latency_ms, created_at=row.created_at, system=row.system)
        scored += await score_one(deps, draft.to_json()) is not None
    if scored:
        log.info("scored %d stored pairs that had no score", scored)
    return scored


def stored_pairs_task(app: faust.App, deps: ScoreDeps) -> Any:
    """At start, then every PAIR_SWEEP_SECONDS."""

    async def score_stored_pairs() -> None:
        # the first sweep of a start reads every pair (a broker that died took the stream's copies
        # of any age); later ones read from the previous start on, so a year of pairs is read once
        since = 0.0
        while not app.should_stop:
            started = time.time()
            try:
                rows = await asyncio.to_thread(deps.repository.unscored_pairs, PAIR_SWEEP_LIMIT, since)
                await _score_rows(deps, rows)
                if len(rows) < PAIR_SWEEP_LIMIT:  # else more wait: the next sweep starts where this one did
                    since = started - PAIR_SWEEP_OVERLAP
                await asyncio.to_thread(deps.repository.forget_processed, time.time() - PROCESSED_KEEP_SECONDS)
            except Exception as exc:  # storage or the broker away for a moment: try again later
                log.warning("scoring stored pairs failed (%s)", type(exc).__name__)
            await asyncio.sleep(PAIR_SWEEP_SECONDS)

    return app.task(score_stored_pairs)
