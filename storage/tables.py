"""Tables. Each row is keyed by (institution, accession) so reprocessing updates, never duplicates."""

from __future__ import annotations

import time

from sqlmodel import Field, SQLModel, UniqueConstraint


class SignedReportRow(SQLModel, table=True):
    """The latest signed (F) or corrected (C) version of a report."""

    __tablename__ = "signed_reports"
    __table_args__ = (UniqueConstraint("institution", "accession"),)

    id: int | None = Field(default=None, primary_key=True)
    institution: str = Field(index=True)
    accession: str
    status: str
    exam: str = ""
    body_system: str = Field(default="other", index=True)
    modality: str = ""
    language: str = ""
    findings: str = ""
    impression: str = ""
    findings_raw: str = ""
    impression_raw: str = ""
    signer: str = ""
    received_at: float = Field(default_factory=time.time)


class DraftRow(SQLModel, table=True):
    """The machine draft of one report's impression."""

    __tablename__ = "drafts"
    __table_args__ = (UniqueConstraint("institution", "accession"),)

    id: int | None = Field(default=None, primary_key=True)
    institution: str = Field(index=True)
    accession: str
    body_system: str = "other"
    language: str = ""
    findings: str = ""
    draft: str = ""
    model_id: str = ""
    adapter_version: str = ""
    template_id: str = ""
    guard: str = ""  # why the text was altered or replaced: "", "empty", "repetition"
    status: str = "draft"  # "retracted" once the exam is cancelled (OBR-25 X)
    latency_ms: float = 0.0
    created_at: float = Field(default_factory=time.time, index=True)


class ScoreRow(SQLModel, table=True):
    """ROUGE of a draft against the signed impression."""

    __tablename__ = "scores"
    __table_args__ = (UniqueConstraint("institution", "accession"),)

    id: int | None = Field(default=None, primary_key=True)
    institution: str = Field(index=True)
    accession: str
    body_system: str = Field(default="other", index=True)
    language: str = ""
    rouge1: float = 0.0
    rouge2: float = 0.0
    rougeL: float = 0.0
    adapter_version: str = ""
    signed_status: str = "F"
    created_at: float = Field(default_factory=time.time, index=True)


class OrderRow(SQLModel, table=True):
    """An imaging order, registered before its result arrives."""

    __tablename__ = "orders"
    __table_args__ = (UniqueConstraint("institution", "accession"),)

    id: int | None = Field(default=None, primary_key=True)
    institution: str = Field(index=True)
    accession: str
    exam: str = ""
    exam_code: str = ""
    body_system: str = "other"
    modality: str = ""
    order_control: str = ""
    received_at: float = Field(default_factory=time.time)
