"""The wire schema of every record that crosses a topic (ingest.events, streams.records, all
kernel.wire.WireRecords): frozen, versioned, and apart from the table schema. A change here is a change every running worker reads: bump SCHEMA_VERSION when a
field is renamed or changes meaning."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ingest.events import DeadLetter, OrderEvent, ReportEvent
from kernel.errors import StreamsError
from kernel.wire import WireRecord
from storage.tables import AlertRow, DraftRow, ScoreRow
from streams.records import SCHEMA_VERSION, AdapterEvent, AlertRecord, DraftRecord, ScoreRecord

#: The fields each record carries on the wire (kind and schema_version come first in every one).
SCHEMA = {
    DraftRecord: ["institution", "accession", "body_system", "language", "findings", "draft", "model_id",
                  "adapter_version", "template_id", "guard", "latency_ms", "created_at", "system"],
    ScoreRecord: ["institution", "accession", "body_system", "language", "rouge1", "rouge2", "rougeL", "missed",
                  "over", "missed_concepts", "over_concepts", "adapter_version", "signed_status", "created_at", "system"],
    AlertRecord: ["institution", "body_system", "adapter_version", "chunk", "metric", "value", "low", "high",
                  "created_at"],
    AdapterEvent: ["event", "name", "version", "at"],
    ReportEvent: ["institution", "accession", "status", "exam", "exam_code", "body_system", "modality", "findings",
                  "impression", "language", "signer", "message_control_id", "sending_application", "observed_at",
                  "findings_raw", "impression_raw", "received_at"],
    OrderEvent: ["institution", "accession", "exam", "exam_code", "body_system", "modality", "order_control",
                 "message_control_id", "received_at"],
    DeadLetter: ["raw", "error", "peer", "received_at", "stage"],  # raw crosses as raw_b64
}

SAMPLES = [
    DraftRecord("XIHE", "A1", "chest", "zh", "右肺结节。", "右肺结节", "tiny@1", "XIHE/v0001", "zh-1", "", 12.5, 1.0),
    ScoreRecord("XIHE", "A1", "chest", "zh", 0.5, 0.25, 0.5, 1, 0, ("nodule",), (), "XIHE/v0001", "F", 2.0),
    AlertRecord("XIHE", "chest", "XIHE/v0001", 7, "rougeL", 0.2, 0.5, 0.7, 3.0),
    AdapterEvent("promoted", "XIHE", "v0001", 4.0),
    ReportEvent("XIHE", "A1", "F", "CT胸部平扫", "CT001", "chest", "CT", "右肺结节。", "右肺结节", "zh", "Dr", "M1", "RIS",
                "20260101", "右肺结节。", "右肺结节", 5.0),
    OrderEvent("XIHE", "A1", "CT胸部平扫", "CT001", "chest", "CT", "NW", "M0", 6.0),
    DeadLetter(b"MSH|^~\\&|\r\x00", "bad frame", "127.0.0.1:1234", 7.0, "frame"),
]

#: JSON as radflow wrote it before every record carried kind and schema_version (still read).
UNVERSIONED = {
    ReportEvent: '{"institution": "XIHE", "accession": "A1", "status": "F", "exam": "CT胸部平扫", "exam_code": "CT001", '
                 '"body_system": "chest", "modality": "CT", "findings": "右肺结节。", "impression": "右肺结节", '
                 '"language": "zh", "signer": "Dr", "message_control_id": "M1", "sending_application": "RIS", '
                 '"observed_at": "20260101", "findings_raw": "右肺结节。", "impression_raw": "右肺结节", '
                 '"received_at": 5.0, "kind": "report"}',
    OrderEvent: '{"institution": "XIHE", "accession": "A1", "exam": "CT胸部平扫", "exam_code": "CT001", '
                '"body_system": "chest", "modality": "CT", "order_control": "NW", "message_control_id": "M0", '
                '"received_at": 6.0, "kind": "order"}',
    DeadLetter: '{"raw_b64": "TVNIfF5+XCZ8DQA=", "error": "bad frame", "peer": "127.0.0.1:1234", "received_at": 7.0, '
                '"stage": "frame"}',
}


def test_every_record_that_crosses_a_topic_is_pinned_here() -> None:
    assert set(WireRecord.__subclasses__()) == set(SCHEMA) == {type(r) for r in SAMPLES}


@pytest.mark.parametrize("record", list(UNVERSIONED), ids=lambda r: r.kind)
def test_json_written_before_versions_is_read(record: type[WireRecord]) -> None:
    sample = next(s for s in SAMPLES if type(s) is record)
    assert record.from_json(UNVERSIONED[record]) == sample


def test_the_wire_schema_is_what_it_says() -> None:
    assert SCHEMA_VERSION == 1
    for record, fields in SCHEMA.items():
        assert [f.name for f in dataclasses.fields(record)] == fields
        assert record.__dataclass_params__.frozen  # type: ignore[attr-defined]


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: r.kind)
def test_records_round_trip_and_say_their_kind_and_version(record: object) -> None:
    wire = json.loads(record.to_json())  # type: ignore[attr-defined]
    assert list(wire)[:2] == ["kind", "schema_version"] and wire["schema_version"] == SCHEMA_VERSION
    assert type(record).from_json(record.to_json()) == record  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.institution = "other"  # type: ignore[attr-defined,misc]


def test_a_message_id_is_derived_from_the_event_and_never_crosses_a_topic() -> None:
    """storage.processed names an inbound message by institution and MSH-10 (issue #19); it is
    a property of the event, so the wire schema above stays as it is."""
    report, order = SAMPLES[4], SAMPLES[5]
    assert isinstance(report, ReportEvent) and isinstance(order, OrderEvent)
    assert (report.message_id, order.message_id) == ("XIHE|M1", "XIHE|M0")
    assert "message_id" not in report.to_dict() and "message_id" not in order.to_dict()
    assert dataclasses.replace(report, message_control_id="").message_id == ""  # known by its key instead


def test_readers_ignore_unknown_fields_and_refuse_another_kind() -> None:
    wire = SAMPLES[0].to_dict() | {"schema_version": SCHEMA_VERSION + 1, "added_later": "x"}
    assert DraftRecord.from_dict(wire) == SAMPLES[0]
    with pytest.raises(StreamsError, match="expected a score record"):
        ScoreRecord.from_dict(SAMPLES[0].to_dict())


def test_storage_rows_are_built_from_records_not_sent() -> None:
    draft, score, alert = SAMPLES[0].to_row(), SAMPLES[1].to_row(), SAMPLES[2].to_row()
    assert isinstance(draft, DraftRow) and draft.draft == "右肺结节" and draft.status == "draft" and draft.id is None
    assert isinstance(score, ScoreRow) and score.missed_concepts == "nodule" and score.over_concepts == ""
    assert isinstance(alert, AlertRow) and alert.metric == "rougeL"
    # the row's own columns (id, status, delivery) never cross a topic
    assert not {"id", "status", "delivery"} & set(SAMPLES[0].to_dict())
