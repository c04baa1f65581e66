"""The listener pipeline with the in-memory sink (the real-broker path is in tests/integration)."""

import json

from ingest.events import DeadLetter, ReportEvent
from ingest.listener import IngestTopics, Listener
from ingest.mllp import ack_code
from ingest.sink import ListSink
from tests import samples

TOPICS = IngestTopics("t.reports", "t.dlq")


async def test_result_is_produced_then_accepted() -> None:
    sink = ListSink()
    ack = await Listener(sink, TOPICS).handle(samples.ORU_ZH_UTF8, "peer")
    assert ack_code(ack) == "CA"  # MSH-15 = AL: enhanced mode, commit accept
    [(topic, key, value)] = sink.records
    assert topic == "t.reports" and key == "XIHE|ACC0001"
    assert ReportEvent.from_dict(json.loads(value)).impression == "右肺上叶磨玻璃结节，建议随访复查。"


async def test_original_mode_answers_aa() -> None:
    sink = ListSink()
    assert ack_code(await Listener(sink, TOPICS).handle(samples.ORU_EN_NARRATIVE, "peer")) == "AA"
    assert len(sink.records) == 1


async def test_broker_failure_is_never_acknowledged_aa() -> None:
    for message, code in ((samples.ORU_EN_NARRATIVE, "AE"), (samples.ORU_ZH_UTF8, "CE")):
        sink = ListSink(fail=True)
        ack = await Listener(sink, TOPICS).handle(message, "peer")
        assert ack_code(ack) == code and b"ERR" in ack
        assert sink.records == []


def _with_msh15(condition: str) -> bytes:
    return samples.ORU_ZH_UTF8.replace(b"|AL|NE|", f"|{condition}|NE|".encode())


async def test_enhanced_mode_conditions() -> None:
    ok, failing = ListSink(), ListSink(fail=True)
    assert await Listener(ok, TOPICS).handle(_with_msh15("NE"), "p") == b""
    assert await Listener(ok, TOPICS).handle(_with_msh15("ER"), "p") == b""
    assert ack_code(await Listener(failing, TOPICS).handle(_with_msh15("ER"), "p")) == "CE"
    assert ack_code(await Listener(ok, TOPICS).handle(_with_msh15("SU"), "p")) == "CA"
    assert await Listener(failing, TOPICS).handle(_with_msh15("SU"), "p") == b""
    assert len(ok.records) == 3  # stored whether or not an acknowledgement was asked for


async def test_duplicate_is_acknowledged_but_not_produced_twice() -> None:
    sink = ListSink()
    listener = Listener(sink, TOPICS)
    for _ in range(3):
        assert ack_code(await listener.handle(samples.ORU_EN_NARRATIVE, "peer")) == "AA"
    assert len(sink.records) == 1 and listener.stats.duplicates == 2


async def test_failed_produce_is_not_remembered_as_duplicate() -> None:
    sink = ListSink(fail=True)
    listener = Listener(sink, TOPICS)
    assert ack_code(await listener.handle(samples.ORU_EN_NARRATIVE, "peer")) == "AE"
    sink.fail = False
    assert ack_code(await listener.handle(samples.ORU_EN_NARRATIVE, "peer")) == "AA"
    assert len(sink.records) == 1


async def test_batch_is_split_and_answered_with_a_batch() -> None:
    sink = ListSink()
    second = samples.ORU_EN_NARRATIVE.replace(b"MSG0003", b"MSG0009").replace(b"ACC0003", b"ACC0009")
    batch = (b"FHS|^~\\&|RIS|LAKEVIEW\rBHS|^~\\&|RIS|LAKEVIEW\r" + samples.ORU_EN_NARRATIVE + second
             + b"BTS|2\rFTS|1\r")
    response = await Listener(sink, TOPICS).handle(batch, "peer")
    assert response.startswith(b"BHS|") and response.endswith(b"BTS|2\r")
    assert [seg[4:6] for seg in response.split(b"\r") if seg.startswith(b"MSA")] == [b"AA", b"AA"]
    assert sorted(key for _, key, _ in sink.records) == ["LAKEVIEW|ACC0003", "LAKEVIEW|ACC0009"]


async def test_orders_register_the_accession() -> None:
    from ingest.events import OrderEvent

    order = (b"MSH|^~\\&|RIS|XIHE|RADFLOW|RADFLOW|20260105||ORM^O01|MSG0100|P|2.3\r"
             b"ORC|NW|PL100|ACC0100\rOBR|1|PL100||CT0101^\xe8\x83\xb8\xe9\x83\xa8CT^L\r")
    sink = ListSink()
    topics = IngestTopics("t.reports", "t.dlq", "t.orders")
    assert ack_code(await Listener(sink, topics).handle(order, "peer")) == "AA"
    [(topic, key, value)] = sink.records
    event = OrderEvent.from_dict(json.loads(value))
    assert topic == "t.orders" and key == "XIHE|ACC0100" and event.body_system == "chest"


async def test_unreadable_input_is_dead_lettered_with_raw_bytes() -> None:
    sink = ListSink()
    ack = await Listener(sink, TOPICS).handle(samples.NOT_HL7, "10.0.0.1:5000")
    assert ack_code(ack) == "AE"
    [(topic, _key, value)] = sink.records
    letter = DeadLetter.from_json(value)
    assert topic == "t.dlq" and letter.raw == samples.NOT_HL7 and letter.peer == "10.0.0.1:5000"


async def test_unsupported_type_is_rejected_and_kept() -> None:
    sink = ListSink()
    ack = await Listener(sink, TOPICS).handle(samples.DFT_UNKNOWN, "peer")
    assert ack_code(ack) == "AR"
    assert [t for t, _, _ in sink.records] == ["t.dlq"]


async def test_adt_is_acknowledged_and_ignored() -> None:
    sink = ListSink()
    listener = Listener(sink, TOPICS)
    assert ack_code(await listener.handle(samples.ADT_A01, "peer")) == "AA"
    assert sink.records == [] and listener.stats.ignored == 1


async def test_batch_with_stray_segments_dead_letters_them() -> None:
    sink = ListSink()
    batch = b"BHS|^~\\&\rJUNK|1\r" + samples.ORU_EN_NARRATIVE + b"BTS|1\r"
    response = await Listener(sink, TOPICS).handle(batch, "peer")
    assert [seg[4:6] for seg in response.split(b"\r") if seg.startswith(b"MSA")] == [b"AA", b"AE"]
    assert sorted(topic for topic, _, _ in sink.records) == ["t.dlq", "t.reports"]
