"""A worker restart between the draft and the signed report still pairs and scores them.

Tansu's ListOffsets end offset lags the real high-watermark, so Faust's table recovery can stop
short and the restarted worker's pairing table may miss the drafts; storage fills the gap.
"""

from __future__ import annotations

from ingest.mllp import MLLPClient, ack_code
from ingest.service import start_ingest
from radflow.demodata import expected_ack, feed, generate_reports
from storage.repository import Repository
from storage.tables import DraftRow, ScoreRow
from streams.topics import TopicNames
from tests.integration.conftest import wait_until


async def _send(port_holder, messages: list[bytes], names: TopicNames, broker) -> list[str]:
    service = await start_ingest("127.0.0.1", 0, names.ingest(),
                                 bootstrap_servers=broker.bootstrap_servers)
    try:
        client = await MLLPClient.connect("127.0.0.1", service.server.port)
        codes = [ack_code(await client.send(m)) for m in messages]
        await client.close()
    finally:
        await service.stop()
    return codes


async def test_pairs_across_a_worker_restart(settings, start_worker, broker) -> None:
    names = TopicNames(settings.topic_prefix)
    repo = Repository(settings.resolved_database_url)
    reports = generate_reports(1, seed=33)[:6]
    items = list(feed(reports, seed=33))
    keys = {(r.institution, r.accession) for r in reports}
    preliminary = [i.message for i in items if i.status == "P"]
    signed = [i.message for i in items if i.status == "F"]
    accepted = [expected_ack(i.report) for i in items if i.status == "P"]

    first = start_worker()
    assert await _send(None, preliminary, names, broker) == accepted
    wait_until(lambda: repo.count(DraftRow, keys) == len(keys), 90, "drafts before the restart")
    assert repo.count(ScoreRow, keys) == 0
    first.stop()

    second = start_worker()
    assert await _send(None, signed, names, broker) == accepted
    wait_until(lambda: repo.count(ScoreRow, keys) == len(keys), 90, "scores after the restart")
    # At-least-once: the restarted worker may see uncommitted events again and re-score them,
    # but rows are keyed by (institution, accession), so nothing is stored twice.
    assert repo.count(DraftRow) == len(keys) and repo.count(ScoreRow) == len(keys)
    assert second.get("/api/stats")["scored"] >= len(keys)
    second.stop()
