"""Replays are harmless, through the real parts (issue #19): the embedded broker, a `radflow
worker` with the tiny model, HL7 over MLLP, SQLite, a fake RIS on loopback.

- Every message produced twice (a RIS that missed the ACK and sent it to a restarted listener,
  or the ingest journal producing what it held): one draft, one model call, one signed report,
  one score and one worklist delivery per exam; a correction re-scores once, its copy not.
- Drafts made while the RIS is down, the worker stopped, the RIS back, the worker started
  again: every draft reaches the RIS exactly once, under its own MSH-10.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from ingest.mllp import MLLPClient, ack_code
from ingest.outbound import draft_control_id
from ingest.service import start_ingest
from radflow.demodata import expected_ack, feed, generate_reports, to_hl7
from storage.repository import Repository
from storage.tables import DraftRow, ScoreRow, SignedReportRow
from streams.topics import TopicNames
from tests.conftest import free_port
from tests.fake_ris import control_ids, fake_ris
from tests.integration.conftest import Worker, wait_for

CORRECTED = "右肺上叶结节，较前增大。"


def caught_up(worker: Worker, prefix: str) -> bool:
    """Every partition of the worker's own topics committed up to its high-water mark."""
    partitions = [p for p in worker.get("/api/debug/tasks")["partitions"] if p["topic"].startswith(prefix + ".")]
    # a partition that never held a record has no commit (None) and a high-water mark of 0
    return bool(partitions) and all(p["highwater"] is not None and (p["committed"] or 0) == p["highwater"]
                                    for p in partitions)


async def send_all(port: int, messages: list[bytes], expected: list[str]) -> None:
    client = await MLLPClient.connect("127.0.0.1", port)
    try:
        assert [ack_code(await client.send(m)) for m in messages] == expected
    finally:
        await client.close()


async def test_every_message_twice_has_one_effect(settings, start_worker, broker) -> None:
    reports = generate_reports(1, seed=19)  # 15 exams, one per segment
    items = list(feed(reports, seed=19))
    corrections = [(r, to_hl7(dataclasses.replace(r, impression_raw=CORRECTED), "C", f"C{r.accession}",
                              datetime(2026, 1, 6))) for r in reports[:3]]
    keys = {(r.institution, r.accession) for r in reports}
    names = TopicNames(settings.topic_prefix)
    repo = Repository(settings.resolved_database_url)
    async with fake_ris() as ris:
        worker = start_worker(dataclasses.replace(settings, worklist_routes=f"*=127.0.0.1:{ris.port}"))
        # Two listeners: a listener answers a message it stored before without producing it again,
        # but only while it runs. The second is a restarted one (or the journal): all go to the broker.
        first, second = [await start_ingest("127.0.0.1", 0, names.ingest(), bootstrap_servers=broker.bootstrap_servers)
                         for _ in "12"]
        try:
            for service in (first, second):  # the copies arrive while the first ones are still being drafted
                await send_all(service.server.port, [i.message for i in items], [expected_ack(i.report) for i in items])
            await wait_for(lambda: repo.count(ScoreRow, keys) == len(keys) and len(ris.received) >= len(keys),
                           120, "every exam drafted, scored and delivered")
            for service in (first, second):
                await send_all(service.server.port, [m for _, m in corrections], [expected_ack(r) for r, _ in corrections])
            await wait_for(lambda: sum(repo.get(ScoreRow, r.institution, r.accession).signed_status == "C"
                                       for r, _ in corrections) == 3, 60, "the corrections re-scored")
            try:
                await wait_for(lambda: caught_up(worker, settings.topic_prefix), 60, "the worker caught up")
            except AssertionError:
                print(worker.get("/api/debug/tasks")["partitions"])
                raise
            stats = worker.get("/api/stats")
        finally:
            for service in (first, second):
                await service.stop()
    assert repo.count(DraftRow) == repo.count(SignedReportRow) == repo.count(ScoreRow) == len(keys)
    assert stats["drafted"] == len(keys)  # the model drafted each exam once
    assert stats["scored"] == len(keys) + len(corrections)  # and each correction once more
    assert stats["replays_skipped"] >= len(keys) + len(corrections)  # every F and C once more (and P in later batches)
    drafts = [repo.get(DraftRow, *k) for k in keys]
    assert sorted(control_ids(ris.received)) == sorted(
        draft_control_id(d.institution, d.accession, d.draft, d.created_at) for d in drafts)  # each draft once
    assert {d.delivery for d in drafts} == {"AA"}
    for r, _ in corrections:
        assert repo.get(SignedReportRow, r.institution, r.accession).impression == CORRECTED
    ids = [f"{i.report.institution}|{control}" for i, control in
           ((i, i.message.split(b"|")[9].decode()) for i in items)]
    assert repo.done(ids) == set(ids)  # the journal may release every one of them
    scored_chunks = sum(c.n for c in repo.drift_chunks())
    assert scored_chunks <= len(keys)  # drift windows counted each exam at most once


async def test_drafts_made_while_the_ris_is_down_reach_it_once_after_a_restart(settings, start_worker, broker) -> None:
    ris_port = free_port()
    settings = dataclasses.replace(settings, worklist_routes=f"*=127.0.0.1:{ris_port}", worklist_sweep=1.0)
    reports = generate_reports(1, seed=20)
    preliminary = [i for i in feed(reports, seed=20) if i.status == "P"]
    keys = {(r.institution, r.accession) for r in reports}
    repo = Repository(settings.resolved_database_url)
    worker = start_worker(settings)
    service = await start_ingest("127.0.0.1", 0, TopicNames(settings.topic_prefix).ingest(),
                                 bootstrap_servers=broker.bootstrap_servers)
    try:
        await send_all(service.server.port, [i.message for i in preliminary], [expected_ack(i.report) for i in preliminary])
    finally:
        await service.stop()
    await wait_for(lambda: repo.count(DraftRow, keys) == len(keys), 90, "every exam drafted")
    await wait_for(lambda: all(repo.get(DraftRow, *k).delivery == "failed" for k in keys), 60,
                   "every delivery tried and failed (nobody listens)")
    worker.stop()
    assert worker.process.returncode == 0
    async with fake_ris(port=ris_port) as ris:
        second = start_worker(settings)
        await wait_for(lambda: all(repo.get(DraftRow, *k).delivery == "AA" for k in keys), 60,
                       "every stored draft delivered after the restart")
        await wait_for(lambda: caught_up(second, settings.topic_prefix), 30, "the worker caught up")
        stats = second.get("/api/stats")
    drafts = [repo.get(DraftRow, *k) for k in keys]
    assert sorted(control_ids(ris.received)) == sorted(
        draft_control_id(d.institution, d.accession, d.draft, d.created_at) for d in drafts)  # each exactly once
    assert stats["drafted"] == 0 and stats["worklist_swept"] >= len(keys)  # sent from storage, not drafted again
