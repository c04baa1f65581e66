"""Scale-out by partition (issue #19): two draft workers and two quality workers on one machine,
each role its own consumer group on the embedded broker, the topics in 4 partitions. One worker
of each role is SIGKILLed mid-stream; the other takes over its partitions (a consumer-group
rebalance, once the broker's 6 s session timeout has passed) and every accepted report ends up
drafted and scored exactly once in storage."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time

from ingest.mllp import MLLPClient, ack_code
from ingest.service import start_ingest
from kernel.codes import WorkerRole
from radflow.demodata import feed, generate_reports
from storage.repository import Repository
from storage.tables import DraftRow, ScoreRow
from streams.topics import TopicNames
from tests.conftest import free_port
from tests.integration.conftest import Worker, wait_for

SENDERS = 8
PARTITIONS = 4


def owned(worker: Worker, topic: str) -> set[int]:
    """The partitions of ``topic`` assigned to a worker now."""
    return {p["partition"] for p in worker.get("/api/debug/tasks")["partitions"] if p["topic"] == topic}


async def test_a_killed_worker_s_partitions_are_taken_over(settings, start_worker, broker, tmp_path) -> None:
    settings = dataclasses.replace(settings, partitions=PARTITIONS, draft_batch=16, draft_within=0.2, max_new_tokens=6,
                                   worklist_sweep=600.0)
    reports = generate_reports(-(-int(os.environ.get("SCALE_OUT_TEST_REPORTS", "450")) // 15), seed=21)
    messages = [item.message for item in feed(reports, seed=21)]
    keys = {(r.institution, r.accession) for r in reports}
    names = TopicNames(settings.topic_prefix)
    repo = Repository(settings.resolved_database_url)

    def role(name: str, n: int) -> Worker:
        return start_worker(dataclasses.replace(settings, worker_role=name, dashboard_port=free_port(),
                                                home=tmp_path / f"{name}{n}"))

    drafters = [role(WorkerRole.DRAFT, n) for n in range(2)]
    quality = [role(WorkerRole.QUALITY, n) for n in range(2)]
    # each worker of a role holds some of the partitions before the stream starts
    for pair in (drafters, quality):
        await wait_for(lambda p=pair: all(owned(w, names.reports) for w in p)
                       and owned(p[0], names.reports) | owned(p[1], names.reports) == set(range(PARTITIONS)),
                       60, "both workers of a role assigned")
    victims = {"draft": drafters[1], "quality": quality[1]}
    before = {r: owned(w, names.reports) for r, w in victims.items()}

    service = await start_ingest("127.0.0.1", 0, names.ingest(), bootstrap_servers=broker.bootstrap_servers)
    acks: list[str] = []

    async def send(share: list[bytes]) -> None:
        client = await MLLPClient.connect("127.0.0.1", service.server.port)
        try:
            for message in share:
                acks.append(ack_code(await client.send(message)))
        finally:
            await client.close()

    try:
        sending = asyncio.gather(*(send(messages[i::SENDERS]) for i in range(SENDERS)))
        await wait_for(lambda: repo.count(DraftRow) >= len(keys) // 4 and repo.count(ScoreRow) >= 20, 120,
                       "drafting and scoring under way")
        for worker in victims.values():
            worker.process.send_signal(signal.SIGKILL)  # no commit, no leaving the group
        for worker in victims.values():
            worker.process.wait()
        killed_at = repo.count(DraftRow), repo.count(ScoreRow)
        await sending
    finally:
        await service.stop()
    assert set(acks) <= {"AA", "CA"} and len(acks) == len(messages)
    assert killed_at[0] < len(keys) and killed_at[1] < len(keys)  # the kills came mid-stream

    started = time.monotonic()
    survivors = {"draft": drafters[0], "quality": quality[0]}
    try:
        for name, worker in survivors.items():
            await wait_for(lambda w=worker: owned(w, names.reports) == set(range(PARTITIONS)), 60,
                           f"the surviving {name} worker assigned every partition")
        took_over = time.monotonic() - started
        await wait_for(lambda: repo.count(DraftRow) >= len(keys) and repo.count(ScoreRow) >= len(keys),
                       120 + len(keys) // 20, "every report drafted and scored after the takeover")
    except AssertionError:
        for name, worker in survivors.items():
            print(name, worker.get("/api/debug/tasks")["partitions"], worker.get("/api/stats"))
            print(worker.log_path.read_text()[-3000:])
        raise
    # nothing lost, nothing doubled
    assert repo.count(DraftRow) == len(keys) == repo.count(DraftRow, keys)
    assert repo.count(ScoreRow) == len(keys) == repo.count(ScoreRow, keys)
    assert sum(c.n for c in repo.drift_chunks()) <= len(keys)  # and no score counted twice in drift
    print(f"killed at {killed_at} (drafts, scores) with partitions {before}; survivors held every "
          f"partition {took_over:.0f} s later, finished {time.monotonic() - started:.0f} s later; stats "
          f"{ {n: w.get('/api/stats') for n, w in survivors.items()} }")
