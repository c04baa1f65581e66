"""The one JSON record base of radflow's topics: ingest's events (ingest/events.py) and the
streams' records (streams/records.py) are both ``WireRecord`` dataclasses.

Each record carries ``kind`` (the score agent reads reports and drafts from one stream and tells
them apart by it) and ``schema_version``. Compatibility rules: a reader ignores fields it does
not know and fills the ones a record lacks from their defaults, so adding a field with a default
keeps the version; renaming or changing the meaning of a field raises ``SCHEMA_VERSION``. JSON
without ``schema_version`` (written before records carried it) is version 1. A record of a newer
version than the reader's is still read (by those rules) and logged once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, ClassVar, Self

from kernel.errors import StreamsError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


class WireRecord:
    """Base of a frozen dataclass that crosses a topic as JSON."""

    kind: ClassVar[str]
    _newer_seen: ClassVar[bool] = False

    def to_dict(self) -> dict[str, Any]:
        fields = dataclasses.asdict(self)  # type: ignore[call-overload]
        fields.pop("kind", None)  # ingest's events keep kind as a field: one place on the wire
        return {"kind": self.kind, "schema_version": SCHEMA_VERSION, **fields}

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
        fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in fields})

    @classmethod
    def from_json(cls, raw: bytes | str) -> Self:
        return cls.from_dict(json.loads(raw))
