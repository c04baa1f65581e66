"""What crosses radflow's own topics: typed, frozen, versioned records (JSON on the wire).

Ingest's events (``ingest.events``) cross the reports, orders and dead-letter topics; the records here cross
the rest. The wire schema is not the table schema: storage rows are built from a record
(``to_row``), never sent as they are.

Each record is a ``kernel.wire.WireRecord``: it carries ``kind`` and ``schema_version``, and
its readers follow the compatibility rules written there.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from kernel.codes import AdapterChange, DraftGuard
from kernel.wire import SCHEMA_VERSION, WireRecord
from storage.tables import AlertRow, DraftRow, OrderRow, ScoreRow, SignedReportRow

__all__ = ["SCHEMA_VERSION", "AdapterChange", "AdapterEvent", "AlertRecord", "DraftRecord", "ScoreRecord", "row_of"]

Row = TypeVar("Row", OrderRow, SignedReportRow)

@dataclass(frozen=True)
class DraftRecord(WireRecord):
    """drafts topic: the machine draft of one report's impression (keyed institution|accession)."""

    kind: ClassVar[str] = "draft"
    institution: str
    accession: str
    body_system: str
    language: str
    findings: str
    draft: str
    model_id: str = ""
    adapter_version: str = ""
    template_id: str = ""
    guard: str = DraftGuard.NONE.value  # kernel.codes.DraftGuard: why the text was altered or replaced
    latency_ms: float = 0.0
    created_at: float = field(default_factory=time.time)
    system: str = ""  # the serving system that drafted it (model.systems); "" in records older than it

    def to_row(self) -> DraftRow:
        return DraftRow(**dataclasses.asdict(self))


@dataclass(frozen=True)
class ScoreRecord(WireRecord):
    """scores topic: a draft scored against its signed impression (keyed by segment)."""

    kind: ClassVar[str] = "score"
    institution: str
    accession: str
    body_system: str
    language: str
    rouge1: float
    rouge2: float
    rougeL: float
    missed: int
    over: int
    missed_concepts: tuple[str, ...] = ()  # lexicon concept names, never report text
    over_concepts: tuple[str, ...] = ()
    adapter_version: str = ""
    signed_status: str = "F"
    created_at: float = field(default_factory=time.time)
    system: str = ""  # the serving system whose draft was scored

    def to_row(self) -> ScoreRow:
        data = dataclasses.asdict(self)
        data["missed_concepts"], data["over_concepts"] = ",".join(self.missed_concepts), ",".join(self.over_concepts)
        return ScoreRow(**data)


@dataclass(frozen=True)
class AlertRecord(WireRecord):
    """alerts topic: a metric of a segment's drift window that left its reference band."""

    kind: ClassVar[str] = "alert"
    institution: str
    body_system: str
    adapter_version: str
    chunk: int
    metric: str
    value: float
    low: float
    high: float
    created_at: float = field(default_factory=time.time)

    def to_row(self) -> AlertRow:
        return AlertRow(**dataclasses.asdict(self))


@dataclass(frozen=True)
class AdapterEvent(WireRecord):
    """adapters topic: an adapter version was promoted or rolled back (keyed by adapter name).

    Every draft worker reads it and serves the champions then in storage; the record says what
    changed, storage says what serves."""

    kind: ClassVar[str] = "adapter"
    event: str  # kernel.codes.AdapterChange
    name: str  # "shared" or an institution
    version: str
    at: float = field(default_factory=time.time)


def row_of(record: WireRecord, model: type[Row]) -> Row:
    """A storage row from a record's fields that the table has (ingest's events: the signed
    report, the order); the row's own columns (id, status, ...) keep their defaults."""
    columns = model.model_fields
    return model(**{k: v for k, v in dataclasses.asdict(record).items()  # type: ignore[call-overload]
                    if k in columns and k != "id"})
