"""What crosses radflow's own topics: typed, frozen, versioned records (JSON on the wire).

Ingest's events (``ingest.events``) cross the reports and orders topics; the records here cross
the rest. The wire schema is not the table schema: storage rows are built from a record
(``to_row``), never sent as they are.

Each record carries ``kind`` (the score agent reads reports and drafts from one stream and tells
them apart by it) and ``schema_version``. Compatibility rules: a reader ignores fields it does not know
and fills the ones a record lacks from their defaults, so adding a field with a default keeps
the version; renaming or changing the meaning of a field raises ``SCHEMA_VERSION``. A record of
a newer version than the reader's is still read (by those rules) and logged once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Self

from radflow.errors import StreamsError
from storage.tables import AlertRow, DraftRow, ScoreRow

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


class _Record:
    kind: ClassVar[str]
    _newer_seen: ClassVar[bool] = False

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "schema_version": SCHEMA_VERSION, **dataclasses.asdict(self)}  # type: ignore[call-overload]

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False).encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        if data.get("kind", cls.kind) != cls.kind:
            raise StreamsError(f"expected a {cls.kind} record, got kind {data.get('kind')!r}")
        if int(data.get("schema_version", 1)) > SCHEMA_VERSION and not cls._newer_seen:
            cls._newer_seen = True
            log.warning("%s records of schema version %s, newer than %d: reading the fields known here",
                        cls.kind, data.get("schema_version"), SCHEMA_VERSION)
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in fields}
        return cls(**values)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Self:
        return cls.from_dict(json.loads(raw))


@dataclass(frozen=True)
class DraftRecord(_Record):
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
    guard: str = ""  # why the text was altered or replaced: "", "empty", "repetition", "retrieval"
    latency_ms: float = 0.0
    created_at: float = field(default_factory=time.time)
    system: str = ""  # the serving system that drafted it (model.systems); "" in records older than it

    def to_row(self) -> DraftRow:
        return DraftRow(**dataclasses.asdict(self))


@dataclass(frozen=True)
class ScoreRecord(_Record):
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
class AlertRecord(_Record):
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


class AdapterChange(StrEnum):
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled-back"


@dataclass(frozen=True)
class AdapterEvent(_Record):
    """adapters topic: an adapter version was promoted or rolled back (keyed by adapter name).

    Every draft worker reads it and serves the champions then in storage; the record says what
    changed, storage says what serves."""

    kind: ClassVar[str] = "adapter"
    event: str  # AdapterChange
    name: str  # "shared" or an institution
    version: str
    at: float = field(default_factory=time.time)
