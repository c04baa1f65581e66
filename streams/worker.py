"""Runs the Faust worker: loads the model, makes sure the topics exist, starts the agents."""

from __future__ import annotations

import asyncio
import logging
import time

from kernel.broker import ensure_topics
from kernel.codes import WorkerRole
from kernel.settings import Settings
from model.loader import LoadedModel, load_model
from model.retrieval import CaseIndex
from model.scoring.pair import warm_up
from model.systems import MODEL, Loaded, SegmentRouter, build, with_champions
from storage.repository import Repository
from streams.app import create_app
from streams.stopping import StoppingWorker
from streams.topics import TopicNames

log = logging.getLogger(__name__)


def _load(settings: Settings) -> LoadedModel:
    loaded = load_model(settings.resolved_model_path)
    log.info("model %s loaded on %s (4-bit: %s)", loaded.model_id, loaded.device, loaded.quantized)
    return loaded


def serving_router(settings: Settings, repository: Repository, cases: CaseIndex) -> SegmentRouter:
    """Every system a segment may be served by (the model, the cold-start one, RADFLOW_SYSTEMS,
    the ranker versions that serve a segment), serving the champions in storage."""
    loaded = Loaded(cases, lambda: _load(settings), settings.max_new_tokens, decode=settings.decode,
                    fewshot_k=settings.fewshot_k, retrieval_k=settings.retrieval_k,
                    consensus_k=settings.consensus_k, rerank_k=settings.rerank_k,
                    rerank_shots=settings.rerank_shots, rankers=settings.resolved_ranker_dir)
    champions = repository.system_champions()
    drafters = build(with_champions([MODEL, settings.system_cold, *settings.system_names], champions), loaded)
    return SegmentRouter(drafters, cases, settings.system_cold, settings.system_min_cases, champions, loaded)


def run_worker(settings: Settings) -> None:
    """Never returns: the process exits when the worker has stopped (streams.stopping)."""
    repository = Repository(settings.resolved_database_url)
    drafter, cases = None, None
    if WorkerRole(settings.worker_role).drafts:  # quality workers need no model
        cases = CaseIndex()  # a year of signed cases: live ones and an imported archive (radflow import)
        for row in repository.signed_pairs(since=time.time() - 365 * 86400):
            cases.add(row.institution, row.accession, row.findings, row.impression)
        log.info("retrieval index: %d signed cases", len(cases))
        drafter = serving_router(settings, repository, cases)
    warm_up()
    names = TopicNames(settings.topic_prefix)
    asyncio.run(ensure_topics(settings.bootstrap_servers,
                              names.source_topics() + names.changelog_topics(settings.worker_role), settings.partitions))
    app = create_app(settings, drafter, repository, cases)
    StoppingWorker(app, loglevel=settings.log_level.lower(), quiet=True, grace=settings.stop_grace).run()
