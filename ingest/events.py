"""Typed events that ingest hands to the rest of radflow: ``kernel.wire.WireRecord``s, JSON on
the reports, orders and dead-letter topics, versioned like every record there."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from kernel.codes import SIGNED_STATUSES, ResultStatus
from kernel.wire import WireRecord

#: OBR-25 result status values radflow acts on (names kept for ingest's readers).
PRELIMINARY, FINAL = ResultStatus.PRELIMINARY, ResultStatus.FINAL
CORRECTED, CANCELLED = ResultStatus.CORRECTED, ResultStatus.CANCELLED


@dataclass(frozen=True)
class ReportEvent(WireRecord):
    """reports topic: one radiology result as read from an ORU^R01 (no patient identifiers on
    purpose), keyed institution|accession."""

    kind: ClassVar[str] = "report"
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
class OrderEvent(WireRecord):
    """orders topic: an imaging order, so the accession is known before any result arrives."""

    kind: ClassVar[str] = "order"
    institution: str
    accession: str
    exam: str
    exam_code: str
    body_system: str
    modality: str
    order_control: str = ""  # ORC-1: NW new, CA cancel, XO change...
    message_control_id: str = ""
    received_at: float = 0.0

    @property
    def key(self) -> str:
        return pair_key(self.institution, self.accession)

    @property
    def message_id(self) -> str:
        return message_id(self.institution, self.message_control_id)


@dataclass(frozen=True)
class DeadLetter(WireRecord):
    """dead-letter topic: input that could not be processed, kept with its raw bytes (base64 on
    the wire) so it can be replayed; keyed by the sending peer."""

    kind: ClassVar[str] = "dead_letter"
    raw: bytes
    error: str
    peer: str
    received_at: float
    stage: str = "parse"

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["raw_b64"] = base64.b64encode(out.pop("raw")).decode()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        fields = {k: v for k, v in data.items() if k != "raw_b64"}
        return super().from_dict(fields | {"raw": base64.b64decode(data["raw_b64"])})


def pair_key(institution: str, accession: str) -> str:
    return f"{institution}|{accession}"


def message_id(institution: str, control_id: str) -> str:
    """One inbound message, the same on every re-send: its institution and MSH-10 (a RIS that
    did not see an ACK sends the message again with the same control id). "" when MSH-10 is
    empty: such a message is known to storage only by (institution, accession, status)."""
    return f"{institution}|{control_id}" if control_id else ""
