"""The Faust app: topics, the draft agent, the score agent and the dashboard pages.

Settings that the embedded broker (Tansu) needs: a 6 s session timeout (joins otherwise take
20 s and more), no idempotent producer and at-least-once processing; source topics are created
up front with the changelogs' partition count (see ``streams.broker``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

import faust

from ingest.events import CANCELLED, OrderEvent, ReportEvent
from model.adapters import serving_specs
from model.drafter import Drafter, DraftRequest
from radflow.metrics import Registry
from radflow.settings import Settings
from storage.repository import Repository
from storage.tables import AlertRow, DraftRow, DriftChunkRow, OrderRow, SignedReportRow
from streams import drift as drift_rules
from streams import pairing
from streams.dashboard import register_pages
from streams.diagnostics import (
    RefusedGaps,
    consumer_lag,
    guard_offsets,
    lost_offsets,
    note_log_starts,
    reread_from_committed,
    tidy_acked,
)
from streams.topics import TopicNames
from streams.worklist import WebWorklist, WorklistSender, draft_payload_to_message

log = logging.getLogger(__name__)

# A dropped offset is neither acked nor held by any stream, which no healthy state shows for
# long. Right after a seek the head shows it too, until its record is delivered: well under a
# second, unless a full stream buffer holds the fetch loop back, hence the longer patience.
HOLE_CHECK_SECONDS = 2.0
HOLE_PATIENCE_SECONDS = 5.0
SEEK_PATIENCE_SECONDS = 60.0


def create_app(settings: Settings, drafter: Drafter | None, repository: Repository) -> faust.App:
    """The agents of ``settings.worker_role``: draft (needs ``drafter``), quality, or all."""
    names = TopicNames(settings.topic_prefix)
    drafting = settings.worker_role in ("all", "draft")
    quality = settings.worker_role in ("all", "quality")
    app = faust.App(
        names.app_id_for(settings.worker_role),
        broker=settings.broker_url,
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        web_port=settings.dashboard_port,
        web_bind=settings.mllp_host,
        web_host=settings.mllp_host,
        datadir=str(settings.home / "faust"),
        autodiscover=False,
    )
    raw = dict(key_serializer="raw", value_serializer="raw")
    reports = app.topic(names.reports, **raw)
    drafts = app.topic(names.drafts, **raw)
    scores = app.topic(names.scores, **raw)
    orders = app.topic(names.orders, **raw)
    alerts = app.topic(names.alerts, **raw)
    reports_and_drafts = app.topic(names.reports, names.drafts, **raw)
    if quality:  # drafters keep no tables (and so recover nothing at start)
        pairs = app.Table("pairs", default=None, partitions=settings.partitions)  # JSON values
        drift_states = app.Table("drift", default=None, partitions=settings.partitions)

    def agent(enabled: bool, channel: Any, **options: Any) -> Any:
        """app.agent for the agents of this worker's role; the others stay plain functions."""
        return app.agent(channel, **options) if enabled else (lambda fn: fn)
    # One thread owns the model, so inference never blocks the event loop (timers, rebalances).
    model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="radflow-model")
    metrics = Registry()
    draft_seconds = metrics.histogram("radflow_draft_batch_seconds", "Model time per draft batch.")
    batch_sizes = metrics.histogram("radflow_draft_batch_size", "Reports per draft batch.",
                                    (1, 2, 4, 8, 16, 32, 64, 128))

    @agent(drafting, reports, concurrency=1)
    async def draft_agent(stream: faust.StreamT) -> None:
        loop = asyncio.get_running_loop()
        async for batch in stream.take(settings.draft_batch, within=settings.draft_within):
            latest: dict[str, ReportEvent] = {}
            for value in batch:
                event = ReportEvent.from_dict(json.loads(value))
                # Preliminary results get a draft; a signed one without findings has nothing to draft.
                if event.status == "P" and event.findings:
                    latest[event.key] = event
                elif event.signed and cases is not None:
                    cases.add(event.institution, event.accession, event.findings, event.impression)
            if not latest:
                continue
            todo = list(latest.values())
            requests = [DraftRequest(e.institution, e.accession, e.findings, e.language) for e in todo]
            started = time.perf_counter()
            assert drafter is not None
            results = await loop.run_in_executor(model_thread, drafter.draft, requests)
            draft_seconds.observe(time.perf_counter() - started)
            batch_sizes.observe(len(requests))
            for event, result in zip(todo, results):
                row = DraftRow(
                    institution=event.institution,
                    accession=event.accession,
                    body_system=event.body_system,
                    language=event.language,
                    findings=event.findings,
                    draft=result.text,
                    model_id=result.model_id,
                    adapter_version=result.adapter_version,
                    template_id=result.template_id,
                    guard=result.guard,
                    latency_ms=result.latency_ms,
                )
                await asyncio.to_thread(repository.upsert, row)
                payload = {"kind": "draft", **row.model_dump(exclude={"id"})}
                await drafts.send(key=event.key.encode(), value=json.dumps(payload, ensure_ascii=False).encode())
            stats["drafted"] += len(todo)
            log.info("drafted %d reports", len(todo))

    cases = getattr(drafter, "retrieval", None)  # signed cases feed the retrieval index as they arrive

    async def swap_adapters(reason: str) -> None:
        """Serve the champions in storage; runs on the model thread, so between two batches."""
        set_adapters = getattr(drafter, "set_adapters", None)
        if set_adapters is None:
            return
        wanted = await asyncio.to_thread(lambda: serving_specs(repository.champions()))  # database and files
        changes = await asyncio.get_running_loop().run_in_executor(model_thread, set_adapters, wanted)
        stats["adapter_swaps"] += len(changes)
        log.info("adapters checked (%s): %d changed", reason, len(changes))

    if drafting:
        @app.task
        async def watch_adapters() -> None:
            """Every draft worker reads every promotion (no consumer group), then swaps."""
            from aiokafka import AIOKafkaConsumer

            await swap_adapters("start")
            while not app.should_stop:
                consumer = AIOKafkaConsumer(names.adapters, bootstrap_servers=settings.bootstrap_servers,
                                            group_id=None, auto_offset_reset="latest", enable_auto_commit=False)
                try:
                    await consumer.start()
                    while not app.should_stop:
                        found = await consumer.getmany(timeout_ms=1000)
                        if any(found.values()):
                            await swap_adapters("promotion event")
                except Exception as exc:  # the broker went away: keep serving, watch again shortly
                    log.warning("adapter events unreadable (%s); retrying in 5 s", type(exc).__name__)
                    await asyncio.sleep(5)
                finally:
                    await consumer.stop()

    stats = {"drafted": 0, "scored": 0, "adapter_swaps": 0, "offsets_reread": 0, "acks_tidied": 0, "gaps_refused": 0, "halves_from_storage": 0, "worklist_delivered": 0, "worklist_failed": 0}
    metrics.counter("radflow_worker_events_total", "Work done by this worker since it started, by kind.",
                    lambda: [({"kind": k}, v) for k, v in stats.items()])
    metrics.gauge("radflow_consumer_lag", "Records not yet processed, per topic partition (highwater - committed).",
                  lambda: consumer_lag(app))

    def find_draft(institution: str, accession: str) -> dict[str, Any] | None:
        row = repository.get(DraftRow, institution, accession)
        stats["halves_from_storage"] += row is not None
        return pairing.draft_half(row) if row else None

    def find_signed(institution: str, accession: str) -> dict[str, Any] | None:
        row = repository.get(SignedReportRow, institution, accession)
        found = row is not None and bool(row.impression)
        stats["halves_from_storage"] += found
        return pairing.signed_from_row(row) if row and found else None

    @agent(quality, reports_and_drafts, concurrency=1)
    async def score_agent(stream: faust.StreamT) -> None:
        async for value in stream:
            payload = json.loads(value)
            draft_part = signed_part = None
            if payload.get("kind") == "draft":
                institution, accession = payload["institution"], payload["accession"]
                draft_part = {"draft": payload["draft"], "adapter_version": payload["adapter_version"], "guard": payload["guard"]}
            else:
                event = ReportEvent.from_dict(payload)
                if event.status == CANCELLED:
                    pairs.pop(event.key, None)
                    await asyncio.to_thread(repository.retract, event.institution, event.accession)
                    continue
                if not event.signed or not event.impression:
                    continue
                institution, accession = event.institution, event.accession
                await asyncio.to_thread(repository.upsert, _signed_row(event))
                signed_part = pairing.signed_from_event(event)
            table_key = f"{institution}|{accession}"
            result = await asyncio.to_thread(
                pairing.update,
                pairs.get(table_key),
                institution,
                accession,
                draft=draft_part,
                signed=signed_part,
                find_draft=find_draft,
                find_signed=find_signed,
            )
            pairs[table_key] = result.entry
            if result.score is not None:
                await asyncio.to_thread(repository.upsert, result.score)
                stats["scored"] += 1
                body = json.dumps(result.score.model_dump(exclude={"id"})).encode()
                segment = names.segment_key(institution, result.score.body_system, result.score.adapter_version)
                await scores.send(key=segment.encode(), value=body)  # re-keyed: drift is per segment

    @agent(quality, scores, concurrency=1)
    async def drift_agent(stream: faust.StreamT) -> None:
        async for value in stream:
            score = json.loads(value)
            segment = names.segment_key(score["institution"], score["body_system"], score["adapter_version"])
            state = drift_states.get(segment)
            if state is None:  # new segment, or the table came back short: rebuild from storage
                stored = await asyncio.to_thread(
                    repository.drift_chunks, score["institution"], score["body_system"], score["adapter_version"]
                )
                monitor = drift_rules.rebuild(stored, settings.drift_chunk, settings.drift_reference_chunks,
                                              settings.drift_first_chunk)
            else:
                monitor = drift_rules.DriftMonitor.from_dict(state)
            result = monitor.add(drift_rules.observation(score))
            drift_states[segment] = monitor.to_dict()
            if result is None:
                continue
            band = result.bands.get("rougeL")
            await asyncio.to_thread(repository.add, DriftChunkRow(
                institution=score["institution"], body_system=score["body_system"],
                adapter_version=score["adapter_version"], chunk=result.index, n=result.n,
                reference=result.reference, band_low=band[0] if band else None, band_high=band[1] if band else None,
                bands=json.dumps(result.bands),
                alert=bool(result.alerts), **result.means,
            ))
            for metric, value_ in result.alerts.items():
                low, high = result.bands[metric]
                alert = AlertRow(institution=score["institution"], body_system=score["body_system"],
                                 adapter_version=score["adapter_version"], chunk=result.index, metric=metric,
                                 value=value_, low=low, high=high)
                await asyncio.to_thread(repository.add, alert)
                await alerts.send(key=segment.encode(), value=json.dumps(alert.model_dump(exclude={"id"})).encode())
                log.warning("drift alert: %s of %s chunk %d left its band", metric, segment, result.index)

    @agent(quality, orders)
    async def order_agent(stream: faust.StreamT) -> None:
        async for value in stream:
            order = OrderEvent.from_dict(json.loads(value))
            fields = OrderRow.model_fields
            row = OrderRow(**{k: v for k, v in asdict(order).items() if k in fields and k != "id"})
            await asyncio.to_thread(repository.upsert, row)

    sender = WorklistSender(settings.parsed_worklist_routes())

    @agent(quality, drafts, concurrency=4)
    async def worklist_agent(stream: faust.StreamT) -> None:
        # Its own agent, so a slow or absent RIS never holds up drafting or scoring.
        async for value in stream:
            payload = json.loads(value)
            if sender.route(payload["institution"]) is None:
                continue
            outcome = await sender.send(payload["institution"], draft_payload_to_message(payload))
            stats["worklist_delivered" if outcome in ("AA", "CA") else "worklist_failed"] += 1
            await asyncio.to_thread(repository.set_delivery, payload["institution"], payload["accession"], outcome)

    suspects: dict[Any, tuple[int, float]] = {}  # partition -> (committed offset, first seen stuck)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # mode's stubs reject async receivers
    async def commit_at_least_once(sender: Any, *args: Any, **kwargs: Any) -> None:
        guard_offsets(app)  # before any record of the new assignment arrives (args: the assignment)
        try:
            await note_log_starts(app, args[0])
        except Exception as exc:  # never fail a rebalance over it; heads then come from commits only
            log.warning("log start offsets unavailable (%s)", type(exc).__name__)

    @app.timer(interval=HOLE_CHECK_SECONDS)
    async def reread_lost_offsets() -> None:
        """Self-healing for the stalls of issue #8. Offsets Faust read and dropped without
        processing are read again from the committed offset (at-least-once; every write is keyed,
        so a re-read never duplicates). Acts on a hole whose committed offset stays put for
        HOLE_PATIENCE_SECONDS; everything uncommitted is processed again, so sooner is cheaper.
        Duplicate acks, which would make the commit crawl, are dropped on every tick."""
        nonlocal suspects
        guard_offsets(app)
        stats["acks_tidied"] += tidy_acked(app)
        stats["gaps_refused"] = RefusedGaps.refused
        now = time.monotonic()
        found = lost_offsets(app)
        suspects = {tp: suspects[tp] if suspects.get(tp, (None,))[0] == hole.start else (hole.start, now)
                    for tp, hole in found.items()}
        stuck = {tp: hole for tp, hole in found.items()
                 if now - suspects[tp][1] >= (SEEK_PATIENCE_SECONDS if hole.at_seek else HOLE_PATIENCE_SECONDS)}
        try:
            healed = bool(stuck) and await reread_from_committed(app)
        except Exception as exc:  # e.g. the broker is away: keep the worker, try on the next tick
            log.warning("re-reading lost offsets failed (%s); trying again", type(exc).__name__)
            healed = False
        if healed:
            for tp, hole in stuck.items():
                log.warning("%s[%d]: offsets %d-%d were read but never processed; reading from %d again",
                            tp.topic, tp.partition, hole.start, hole.end - 1, hole.start)
                stats["offsets_reread"] += hole.end - hole.start
            suspects = {}

    register_pages(app, settings, repository, stats, WebWorklist(repository, reports), metrics)
    app.radflow_topics = names  # type: ignore[attr-defined]
    app.radflow_started = time.time()  # type: ignore[attr-defined]
    return app


def _signed_row(event: ReportEvent) -> SignedReportRow:
    data = asdict(event)
    fields = SignedReportRow.model_fields
    return SignedReportRow(**{k: v for k, v in data.items() if k in fields and k != "id"})
