"""Runs the Faust worker: loads the model, makes sure the topics exist, starts the agents."""

from __future__ import annotations

import asyncio
import logging
import time

from model.drafter import ModelDrafter
from model.loader import load_model
from model.retrieval import CaseIndex
from model.scoring.pair import warm_up
from radflow.broker import ensure_topics
from radflow.codes import WorkerRole
from radflow.settings import Settings
from storage.repository import Repository
from streams.app import create_app
from streams.stopping import StoppingWorker
from streams.topics import TopicNames

log = logging.getLogger(__name__)


def run_worker(settings: Settings) -> None:
    """Never returns: the process exits when the worker has stopped (streams.stopping)."""
    repository = Repository(settings.resolved_database_url)
    drafter, cases = None, None
    if WorkerRole(settings.worker_role).drafts:  # quality workers need no model
        loaded = load_model(settings.resolved_model_path)
        log.info("model %s loaded on %s (4-bit: %s)", loaded.model_id, loaded.device, loaded.quantized)
        cases = CaseIndex()
        for row in repository.signed_pairs(since=time.time() - 365 * 86400):  # a year of signed cases
            cases.add(row.institution, row.accession, row.findings, row.impression)
        log.info("retrieval index: %d signed cases", len(cases))
        drafter = ModelDrafter(loaded, settings.max_new_tokens, retrieval=cases, retrieval_k=settings.retrieval_k,
                               fewshot_k=settings.fewshot_k, decode=settings.decode)
    warm_up()
    names = TopicNames(settings.topic_prefix)
    asyncio.run(ensure_topics(settings.bootstrap_servers,
                              names.source_topics() + names.changelog_topics(settings.worker_role), settings.partitions))
    app = create_app(settings, drafter, repository, cases)
    StoppingWorker(app, loglevel=settings.log_level.lower(), quiet=True, grace=settings.stop_grace).run()
