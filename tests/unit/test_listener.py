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
    assert ack_code(ack) == "AA"
    [(topic, key, value)] = sink.records
    assert topic == "t.reports" and key == "XIHE|ACC0001"
    assert ReportEvent.from_dict(json.loads(value)).impression == "右肺上叶磨玻璃结节，建议随访复查。"


async def test_broker_failure_is_never_acknowledged_aa() -> None:
    sink = ListSink(fail=True)
    ack = await Listener(sink, TOPICS).handle(samples.ORU_ZH_UTF8, "peer")
    assert ack_code(ack) == "AE" and b"ERR" in ack
    assert sink.records == []


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
