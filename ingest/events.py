"""Typed events that ingest hands to the rest of radflow (JSON on the wire)."""

from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from radflow.codes import SIGNED_STATUSES, ResultStatus

#: OBR-25 result status values radflow acts on (names kept for ingest's readers).
PRELIMINARY, FINAL = ResultStatus.PRELIMINARY, ResultStatus.FINAL
CORRECTED, CANCELLED = ResultStatus.CORRECTED, ResultStatus.CANCELLED


class _JsonEvent:
    """JSON on the wire; unknown fields are ignored so older workers read newer events."""

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False).encode()  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class ReportEvent(_JsonEvent):
    """One radiology result as read from an ORU^R01 (no patient identifiers on purpose)."""

    institution: str
    accession: str
    status: str
    exam: str
    exam_code: str
    body_system: str
    modality: str
    findings: str
    impression: str
    language: str
    signer: str = ""
    message_control_id: str = ""
    sending_application: str = ""
    observed_at: str = ""
    findings_raw: str = ""
    impression_raw: str = ""
    received_at: float = 0.0
    kind: str = field(default="report")

    @property
    def key(self) -> str:
        """Partition key: drafts and signed reports of one exam meet on one partition."""
        return pair_key(self.institution, self.accession)

    @property
    def signed(self) -> bool:
        return self.status in SIGNED_STATUSES

    @property
    def message_id(self) -> str:
        """The inbound message's identity (:func:`message_id`); "" when MSH-10 was empty."""
        return message_id(self.institution, self.message_control_id)


@dataclass(frozen=True)
class OrderEvent(_JsonEvent):
    """An imaging order: the accession is known before any result arrives."""

    institution: str
    accession: str
    exam: str
    exam_code: str
    body_system: str
    modality: str
    order_control: str = ""  # ORC-1: NW new, CA cancel, XO change...
    message_control_id: str = ""
    received_at: float = 0.0
    kind: str = field(default="order")

    @property
    def key(self) -> str:
        return pair_key(self.institution, self.accession)

    @property
    def message_id(self) -> str:
        return message_id(self.institution, self.message_control_id)


@dataclass(frozen=True)
class DeadLetter:
    """Input that could not be processed, kept with its raw bytes so it can be replayed."""

    raw: bytes
    error: str
    peer: str
    received_at: float
    stage: str = "parse"

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "raw_b64": base64.b64encode(self.raw).decode(),
                "error": self.error,
                "peer": self.peer,
                "received_at": self.received_at,
                "stage": self.stage,
            }
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> DeadLetter:
        d = json.loads(data)
        return cls(base64.b64decode(d["raw_b64"]), d["error"], d["peer"], d["received_at"], d["stage"])


def pair_key(institution: str, accession: str) -> str:
    return f"{institution}|{accession}"


def message_id(institution: str, control_id: str) -> str:
    """One inbound message, the same on every re-send: its institution and MSH-10 (a RIS that
    did not see an ACK sends the message again with the same control id). "" when MSH-10 is
    empty: such a message is known to storage only by (institution, accession, status)."""
    return f"{institution}|{control_id}" if control_id else ""
