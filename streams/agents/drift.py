"""The drift agent: scores in, one drift window per segment (``streams.drift``), alerts out.

A segment's monitor lives in ``states`` (the worker's Faust table, a dict in unit tests). When
the table lacks it (a new segment, or a recovery that stopped short) it is rebuilt from the
windows in storage.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import faust

from model.scoring.aggregate import METRICS, observation
from storage.repository import Repository
from storage.tables import DriftChunkRow
from streams import drift as drift_rules
from streams.agents import Send, one_at_a_time
from streams.records import AlertRecord, ScoreRecord
from streams.topics import TopicNames

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriftDeps:
    repository: Repository
    states: MutableMapping[str, Any]  # segment -> DriftMonitor.to_dict()
    send: Send  # to the alerts topic, keyed by segment
    chunk: int = 20
    reference_chunks: int = 6
    first_chunk: int = 0  # a segment's first windows close sooner (RADFLOW_DRIFT_FIRST_CHUNK)


def _from_storage(deps: DriftDeps, score: ScoreRecord) -> drift_rules.DriftMonitor:
    segment = (score.institution, score.body_system, score.adapter_version)
    stored = deps.repository.drift_chunks(*segment)
    window = deps.repository.drift_window(*segment, max((c.chunk + 1 for c in stored), default=0))
    return drift_rules.rebuild(stored, deps.chunk, deps.reference_chunks, deps.first_chunk, window)


async def _monitor(deps: DriftDeps, segment: str, score: ScoreRecord) -> drift_rules.DriftMonitor:
    state = deps.states.get(segment)
    if state is not None:
        return drift_rules.DriftMonitor.from_dict(state)
    return await asyncio.to_thread(_from_storage, deps, score)


def chunk_row(score: ScoreRecord, result: drift_rules.ChunkResult) -> DriftChunkRow:
    band = result.bands.get("rougeL")
    means: dict[str, Any] = {m: result.means[m] for m in METRICS}
    return DriftChunkRow(
        institution=score.institution, body_system=score.body_system, adapter_version=score.adapter_version,
        chunk=result.index, n=result.n, reference=result.reference,
        band_low=band[0] if band else None, band_high=band[1] if band else None,
        bands=json.dumps(result.bands), alert=bool(result.alerts), **means,
    )


def alert_records(score: ScoreRecord, result: drift_rules.ChunkResult) -> list[AlertRecord]:
    return [AlertRecord(institution=score.institution, body_system=score.body_system,
                        adapter_version=score.adapter_version, chunk=result.index, metric=metric,
                        value=value, low=result.bands[metric][0], high=result.bands[metric][1])
            for metric, value in result.alerts.items()]


async def watch_one(deps: DriftDeps, value: bytes | str) -> list[AlertRecord]:
    """Add one score to its segment's window; returns the alerts a completed window raised.

    Storage decides whether a score counts (``Repository.count_in_drift``: each exam once), in
    the transaction that stores the window it closes. A score seen again (a replay, or a table
    recovered behind storage) counts nothing, and the segment's state is read again from storage."""
    score = ScoreRecord.from_json(value)
    segment = TopicNames.segment_key(score.institution, score.body_system, score.adapter_version)
    monitor = await _monitor(deps, segment, score)
    window = monitor.chunks
    result = monitor.add(observation(score))
    alerts = alert_records(score, result) if result is not None else []
    closed = [chunk_row(score, result), *(a.to_row() for a in alerts)] if result is not None else []
    if not await asyncio.to_thread(deps.repository.count_in_drift, score.institution, score.accession, window, closed):
        deps.states[segment] = (await asyncio.to_thread(_from_storage, deps, score)).to_dict()
        return []
    deps.states[segment] = monitor.to_dict()
    for alert in alerts:
        await deps.send(segment, alert)
        log.warning("drift alert: %s of %s chunk %d left its band", alert.metric, segment, alert.chunk)
    return alerts


def drift_agent(app: faust.App, scores: Any, deps: DriftDeps) -> Any:
    return one_at_a_time(app, scores, "radflow.drift", watch_one, deps)
