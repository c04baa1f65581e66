"""HL7 bytes over a socket → ACK → Kafka → draft (tiny model) → SQLite → score → dashboard."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer

from ingest.events import DeadLetter
from ingest.mllp import MLLPClient, ack_code
from ingest.service import start_ingest
from radflow.demodata import expected_ack, feed, generate_reports
from storage.repository import Repository
from storage.tables import DraftRow, ScoreRow, SignedReportRow
from streams.topics import TopicNames
from tests import samples
from tests.integration.conftest import wait_until


async def test_hl7_to_draft_and_score(settings, start_worker, broker) -> None:
    worker = start_worker()
    names = TopicNames(settings.topic_prefix)
    service = await start_ingest("127.0.0.1", 0, names.ingest(),
                                 bootstrap_servers=broker.bootstrap_servers)
    reports = generate_reports(1, seed=21)  # 3 institutions x 5 body systems
    items = list(feed(reports, seed=21))
    try:
        client = await MLLPClient.connect("127.0.0.1", service.server.port)
        codes = [ack_code(await client.send(item.message)) for item in items]
        junk_ack = await client.send(samples.NOT_HL7)
        await client.close()
    finally:
        await service.stop()
    assert codes == [expected_ack(item.report) for item in items]  # NANHU asks for enhanced mode (CA)
    assert ack_code(junk_ack) == "AE"

    repo = Repository(settings.resolved_database_url)
    keys = {(r.institution, r.accession) for r in reports}
    wait_until(lambda: repo.count(ScoreRow, keys) == len(keys), 120, "every report scored")
    for report in reports:
        draft = repo.get(DraftRow, report.institution, report.accession)
        assert draft.model_id.startswith("tiny@") and draft.template_id.split("-")[0] == report.language
        assert draft.findings == report.findings
        signed = repo.get(SignedReportRow, report.institution, report.accession)
        assert signed.impression == report.impression and signed.body_system == report.body_system
        score = repo.get(ScoreRow, report.institution, report.accession)
        assert 0.0 <= score.rougeL <= 1.0 and score.body_system == report.body_system
    assert repo.count(DraftRow) == len(keys)  # each report drafted once

    summary = worker.get("/api/summary")
    assert {row["institution"] for row in summary["institutions"]} == {"XIHE", "NANHU", "LAKEVIEW"}
    assert sum(row["n"] for row in summary["institutions"]) == len(keys)
    assert worker.get("/api/stats")["scored"] >= len(keys)

    # the unreadable frame is on the dead-letter topic with its raw bytes
    consumer = AIOKafkaConsumer(names.dead_letter, bootstrap_servers=broker.bootstrap_servers,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=5000)
        letters = [DeadLetter.from_json(m.value) for msgs in batch.values() for m in msgs]
    finally:
        await consumer.stop()
    assert [letter.raw for letter in letters] == [samples.NOT_HL7]

    await _corrections_cancellations_and_orders(settings, broker, repo, reports)

    # nothing that identifies a patient or quotes a report reaches the worker's log
    log = worker.log_path.read_text(encoding="utf-8", errors="replace")
    for canary in ["DEMO^PATIENT", "SYN"] + [r.findings[:12] for r in reports]:
        assert canary not in log


async def test_never_aa_while_the_broker_is_down() -> None:
    """A real broker that goes away after the listener connected: the sender gets AE, never AA."""
    from ingest.listener import Listener
    from ingest.sink import KafkaSink
    from kernel.broker import EmbeddedBroker
    from tests.conftest import free_port

    broker = EmbeddedBroker(free_port()).start()
    names = TopicNames("down")
    sink = KafkaSink(broker.bootstrap_servers, timeout=3)
    await sink.start()
    listener = Listener(sink, names.ingest())
    try:
        assert ack_code(await listener.handle(samples.ORU_EN_NARRATIVE, "peer")) == "AA"
        broker.stop()
        ack = await listener.handle(samples.ORU_EN_NARRATIVE.replace(b"MSG0003", b"MSG0004"), "peer")
        assert ack_code(ack) == "AE" and b"ERR" in ack
        assert listener.stats.accepted == 1 and listener.stats.errors == 1
    finally:
        broker.stop()
        await asyncio.wait_for(sink.stop(), 10)


async def _corrections_cancellations_and_orders(settings, broker, repo, reports) -> None:
    """A corrected report is re-scored, a cancelled one retracted, an order registered."""
    import dataclasses
    from datetime import datetime

    from ingest.clean import clean_text
    from radflow.demodata import to_hl7
    from storage.tables import OrderRow

    corrected, cancelled = reports[0], reports[1]
    changed = dataclasses.replace(corrected, impression_raw="完全不同的结论。" if corrected.language == "zh"
                                  else "An entirely different conclusion.")
    order = (b"MSH|^~\\&|RIS|XIHE|RADFLOW|RADFLOW|20260105||ORM^O01|ORD1|P|2.3\r"
             b"ORC|NW|PL9|XIOR99999\rOBR|1|PL9||CT0101^\xe8\x83\xb8\xe9\x83\xa8CT^L\r")
    now = datetime(2026, 1, 6)
    names = TopicNames(settings.topic_prefix)
    service = await start_ingest("127.0.0.1", 0, names.ingest(), bootstrap_servers=broker.bootstrap_servers)
    try:
        client = await MLLPClient.connect("127.0.0.1", service.server.port)
        for message in (to_hl7(changed, "C", "CORR1", now), to_hl7(cancelled, "X", "CANC1", now), order):
            assert ack_code(await client.send(message)) in ("AA", "CA")
        await client.close()
    finally:
        await service.stop()

    def corrected_rescored() -> bool:
        row = repo.get(ScoreRow, corrected.institution, corrected.accession)
        return row is not None and row.signed_status == "C"

    wait_until(corrected_rescored, 60, "the corrected report re-scored")
    signed = repo.get(SignedReportRow, corrected.institution, corrected.accession)
    assert signed.status == "C" and signed.impression == clean_text(changed.impression_raw)  # replaced
    wait_until(lambda: repo.get(ScoreRow, cancelled.institution, cancelled.accession) is None, 60, "the retraction")
    assert repo.get(DraftRow, cancelled.institution, cancelled.accession).status == "retracted"
    wait_until(lambda: repo.get(OrderRow, "XIHE", "XIOR99999") is not None, 60, "the order registered")
    assert repo.get(OrderRow, "XIHE", "XIOR99999").body_system == "chest"


async def test_drafter_and_quality_workers_scale_apart(settings, start_worker, broker) -> None:
    """The roles of docker-compose: a drafter (model, no tables) and a quality worker (no model)."""
    import dataclasses

    from tests.conftest import free_port
    from tests.integration.conftest import wait_for

    drafter = start_worker(dataclasses.replace(settings, worker_role="draft", dashboard_port=free_port()))
    quality = start_worker(dataclasses.replace(settings, worker_role="quality", model_path="/nonexistent"))
    reports = generate_reports(1, seed=51)
    names = TopicNames(settings.topic_prefix)
    service = await start_ingest("127.0.0.1", 0, names.ingest(), bootstrap_servers=broker.bootstrap_servers)
    try:
        client = await MLLPClient.connect("127.0.0.1", service.server.port)
        for item in feed(reports, seed=51):
            assert ack_code(await client.send(item.message)) in ("AA", "CA")
        await client.close()
    finally:
        await service.stop()
    repo = Repository(settings.resolved_database_url)
    await wait_for(lambda: repo.count(ScoreRow) == len(reports), 90, "scores from the split roles")
    assert drafter.get("/api/stats")["drafted"] == len(reports) and drafter.get("/api/stats")["scored"] == 0
    assert quality.get("/api/stats")["scored"] >= len(reports) and quality.get("/api/stats")["drafted"] == 0
