"""The Faust app: wires the topics, tables and agents of a worker's role; defines none of them.

Settings that the embedded broker (Tansu) needs: a 6 s session timeout (joins otherwise take
20 s and more), no idempotent producer and at-least-once processing; source topics are created
up front with the changelogs' partition count (see ``kernel.broker.ensure_topics``).
Which record crosses which topic: docs/architecture.md.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust

from kernel.codes import WorkerRole
from kernel.metrics import Registry
from kernel.settings import Settings
from model.cases import CaseSource
from model.drafter import Drafter
from storage.repository import Repository
from streams.agents import Send
from streams.agents.adapters import AdapterDeps, SwappingDrafter, adapter_task
from streams.agents.draft import DraftDeps, draft_agent
from streams.agents.drift import DriftDeps, drift_agent
from streams.agents.orders import OrderDeps, order_agent
from streams.agents.score import ScoreDeps, score_agent, stored_pairs_task
from streams.agents.worklist import WorklistDeps, sweep_task, worklist_agent
from streams.dashboard import register_pages
from streams.offsets import OffsetGuard
from streams.stats import new_stats
from streams.topics import TopicNames
from streams.worklist import WebWorklist, WorklistSender


def new_app(settings: Settings, names: TopicNames) -> faust.App:
    return faust.App(
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


def raw_topic(app: faust.App, *names: str) -> faust.TopicT:
    """Bytes in, bytes out: records are JSON that the agents read themselves (streams.records)."""
    return app.topic(*names, key_serializer="raw", value_serializer="raw")


def sender(topic: Any) -> Send:
    """A Send onto ``topic``: the record's JSON, keyed by the given string."""

    async def send(key: str, record: Any) -> None:
        await topic.send(key=key.encode(), value=record.to_json())

    return send


def create_app(settings: Settings, drafter: Drafter | None, repository: Repository,
               cases: CaseSource | None = None) -> faust.App:
    """The agents of ``settings.worker_role``: draft (needs ``drafter``), quality, or all.
    ``cases``: the retrieval index that signed reports are added to as they arrive."""
    role = WorkerRole(settings.worker_role)
    names = TopicNames(settings.topic_prefix)
    app = new_app(settings, names)
    reports, drafts = raw_topic(app, names.reports), raw_topic(app, names.drafts)
    stats = new_stats()
    metrics = Registry()
    offsets = OffsetGuard(app, stats)
    offsets.attach()
    if role.drafts:
        if drafter is None:
            raise ValueError(f"a {role} worker needs a drafter")
        _wire_drafting(app, settings, names, drafter, repository, cases, reports, drafts, stats, metrics)
    if role.scores:  # drafters keep no tables (and so recover nothing at start)
        _wire_quality(app, settings, names, repository, reports, drafts, stats)
    metrics.counter("radflow_worker_events_total", "Work done by this worker since it started, by kind.",
                    lambda: [({"kind": k}, v) for k, v in stats.items()])
    metrics.gauge("radflow_consumer_lag", "Records not yet processed, per topic partition (highwater - committed).",
                  offsets.lag)
    register_pages(app, settings, repository, stats, WebWorklist(repository, reports), metrics, offsets)
    return app


def _wire_drafting(app: faust.App, settings: Settings, names: TopicNames, drafter: Drafter, repository: Repository,
                   cases: CaseSource | None, reports: Any, drafts: Any, stats: dict[str, int], metrics: Registry) -> None:
    # One thread owns the model, so inference never blocks the event loop (timers, rebalances).
    model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="radflow-model")
    seconds = metrics.histogram("radflow_draft_batch_seconds", "Model time per draft batch.")
    sizes = metrics.histogram("radflow_draft_batch_size", "Reports per draft batch.", (1, 2, 4, 8, 16, 32, 64, 128))

    def observe(elapsed: float, size: int) -> None:
        seconds.observe(elapsed)
        sizes.observe(size)

    draft_agent(app, reports, DraftDeps(drafter, repository, sender(drafts), model_thread, stats,
                                        settings.draft_batch, settings.draft_within, cases, observe))
    if isinstance(drafter, SwappingDrafter):
        adapter_task(app, AdapterDeps(drafter, repository, model_thread, stats, settings.bootstrap_servers,
                                      names.adapters))


def _wire_quality(app: faust.App, settings: Settings, names: TopicNames, repository: Repository,
                  reports: Any, drafts: Any, stats: dict[str, int]) -> None:
    pairs = app.Table("pairs", default=None, partitions=settings.partitions)  # JSON values
    drift_states = app.Table("drift", default=None, partitions=settings.partitions)
    scores = raw_topic(app, names.scores)
    scoring = ScoreDeps(repository, pairs, sender(scores), stats)
    score_agent(app, raw_topic(app, names.reports, names.drafts), scoring)
    stored_pairs_task(app, scoring)
    drift_agent(app, scores, DriftDeps(repository, drift_states, sender(raw_topic(app, names.alerts)),
                                       settings.drift_chunk, settings.drift_reference_chunks,
                                       settings.drift_first_chunk))
    order_agent(app, raw_topic(app, names.orders), OrderDeps(repository))
    worklist = WorklistDeps(WorklistSender(settings.parsed_worklist_routes()), repository, stats,
                            sweep_every=settings.worklist_sweep)
    worklist_agent(app, drafts, worklist)
    sweep_task(app, worklist)
