"""The wire schema of radflow's own topics (streams.records): frozen, versioned, and apart from the
table schema. A change here is a change every running worker reads: bump SCHEMA_VERSION when a
field is renamed or changes meaning."""

from __future__ import annotations

import dataclasses
import json

import pytest

from radflow.errors import StreamsError
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
}

SAMPLES = [
    DraftRecord("XIHE", "A1", "chest", "zh", "右肺结节。", "右肺结节", "tiny@1", "XIHE/v0001", "zh-1", "", 12.5, 1.0),
    ScoreRecord("XIHE", "A1", "chest", "zh", 0.5, 0.25, 0.5, 1, 0, ("nodule",), (), "XIHE/v0001", "F", 2.0),
    AlertRecord("XIHE", "chest", "XIHE/v0001", 7, "rougeL", 0.2, 0.5, 0.7, 3.0),
    AdapterEvent("promoted", "XIHE", "v0001", 4.0),
]


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
