"""Tables. Each row is keyed by (institution, accession) so reprocessing updates, never duplicates."""


import time

from sqlalchemy import Index
from sqlmodel import Field, SQLModel, UniqueConstraint

from kernel.codes import AdapterStatus, DraftGuard, DraftStatus, ResultStatus


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
    guard: str = DraftGuard.NONE.value  # kernel.codes.DraftGuard: why the text was altered or replaced
    status: str = DraftStatus.DRAFT.value  # SIGNED once its signed report is stored; RETRACTED once cancelled
    delivery: str = ""  # sending it to the RIS worklist: "", sending, AA/CA, AR/CR, failed (retried later)
    delivery_attempts: int = 0
    delivery_due: float = 0.0  # when it may be sent (again): the end of a claim, or of a failure's backoff
    delivered_at: float | None = None
    latency_ms: float = 0.0
    created_at: float = Field(default_factory=time.time, index=True)
    system: str = ""  # the serving system that drafted it (model.systems)


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
    missed: int = 0  # findings in the signed impression the draft lacks or negates
    over: int = 0  # findings in the draft the signed impression lacks or negates
    missed_concepts: str = ""  # comma-separated lexicon concepts (no report text)
    over_concepts: str = ""
    adapter_version: str = ""
    signed_status: str = ResultStatus.FINAL.value
    inputs: str = ""  # digest of the draft and signed texts scored (streams.pairing.inputs_of): a replay is a no-op
    drift_chunk: int = -1  # the drift window that counted this score, once it closed; -1: none yet
    created_at: float = Field(default_factory=time.time, index=True)
    system: str = ""  # the serving system whose draft was scored


class ServedTotalRow(SQLModel, table=True):
    """Running sums of the scores per institution × body system × drafting system (storage/totals.py),
    kept in the transaction of each score write, so all-time means never scan the scores."""

    __tablename__ = "served_totals"
    __table_args__ = (UniqueConstraint("institution", "body_system", "system"),)

    id: int | None = Field(default=None, primary_key=True)
    institution: str
    body_system: str
    system: str
    n: int = 0
    sum_rouge1: float = 0.0
    sum_rouge2: float = 0.0
    sum_rougel: float = 0.0  # lower case: the raw SQL of storage/totals.py needs no quoting on PostgreSQL


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


class DriftChunkRow(SQLModel, table=True):
    """One tumbling window (chunk) of scores of a segment, with the band it was judged against."""

    __tablename__ = "drift_chunks"

    id: int | None = Field(default=None, primary_key=True)
    institution: str = Field(index=True)
    body_system: str = Field(index=True)
    adapter_version: str = ""
    chunk: int = 0
    n: int = 0
    rouge1: float = 0.0
    rouge2: float = 0.0
    rougeL: float = 0.0
    missed_rate: float = 0.0
    over_rate: float = 0.0
    reference: bool = False  # part of the reference period
    band_low: float | None = None  # R-L band of the reference period (mean - 3 sd)
    band_high: float | None = None
    bands: str = ""  # JSON {metric: [low, high]} for every metric, once the reference is complete
    alert: bool = False
    created_at: float = Field(default_factory=time.time, index=True)


class AlertRow(SQLModel, table=True):
    """A metric of a segment's chunk that left its reference band."""

    __tablename__ = "alerts"

    id: int | None = Field(default=None, primary_key=True)
    institution: str = Field(index=True)
    body_system: str
    adapter_version: str = ""
    chunk: int = 0
    metric: str = ""
    value: float = 0.0
    low: float = 0.0
    high: float = 0.0
    created_at: float = Field(default_factory=time.time, index=True)


class AdapterRow(SQLModel, table=True):
    """One trained LoRA adapter version. ``status`` champion is the alias that serves."""

    __tablename__ = "adapters"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)  # "shared" or an institution
    version: str
    path: str
    template_family: str = "1"
    base_model_id: str = ""
    status: str = AdapterStatus.CANDIDATE.value  # kernel.codes.AdapterStatus
    run_id: int | None = None
    created_at: float = Field(default_factory=time.time)
    promoted_at: float | None = None


class TrainingRunRow(SQLModel, table=True):
    """One refit: its data window, template choice, metrics and the gate's decision."""

    __tablename__ = "training_runs"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)
    trigger: str = "manual"  # manual, schedule, drift
    state: str = "running"  # running, done, failed, skipped
    version: str = ""
    window_start: float = 0.0
    window_end: float = 0.0
    data_fingerprint: str = ""
    train_examples: int = 0
    test_examples: int = 0
    template_family: str = ""
    selection: str = ""  # JSON {family: validation ROUGE-L}
    steps: int = 0
    resumed_from: int = 0
    train_tokens_per_s: float = 0.0
    decision: str = ""  # promoted, rejected, skipped
    reason: str = ""
    delta_rougeL: float = 0.0
    p_value: float = 1.0
    metrics: str = ""  # JSON of the Decision
    started_at: float = Field(default_factory=time.time)
    finished_at: float | None = None


class AdapterEvalRow(SQLModel, table=True):
    """Held-out metrics of one segment for the challenger or the champion of a run."""

    __tablename__ = "adapter_evals"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(index=True)
    role: str  # challenger, champion
    adapter: str = ""  # name/version, or "" for the base model
    institution: str
    body_system: str
    n: int = 0
    rouge1: float = 0.0
    rouge2: float = 0.0
    rougeL: float = 0.0
    missed_rate: float = 0.0
    over_rate: float = 0.0


class ProcessedMessageRow(SQLModel, table=True):
    """An inbound HL7 message whose effects downstream are durable in storage ("done").

    Written by the agent that owns the message's effect (draft: P; score: F, C, X; orders:
    orders), in the same transaction as that effect or right after it. The ingest journal asks
    ``Repository.done`` which of its entries it may release. Contract: docs/architecture.md.
    """

    __tablename__ = "processed_messages"
    __table_args__ = (Index("ix_processed_messages_key", "institution", "accession", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(unique=True)  # ingest.events.message_id: "institution|MSH-10"
    institution: str
    accession: str
    status: str = ""  # OBR-25 of a result (P, F, C, X), "order" for an order
    agent: str = ""  # which agent recorded it: draft, score, orders
    processed_at: float = Field(default_factory=time.time, index=True)


class SystemRow(SQLModel, table=True):
    """One promotion of a drafting system (model/systems.py) for a segment (institution × body
    system). ``status`` champion serves; retired ones are kept for rollback."""

    __tablename__ = "serving_systems"

    id: int | None = Field(default=None, primary_key=True)
    institution: str = Field(index=True)
    body_system: str = Field(index=True)
    system: str  # a registry name: retrieval, consensus, rerank, ...
    status: str = AdapterStatus.CHAMPION.value  # champion, retired, rejected (rolled back)
    reason: str = ""  # cold start, the gate's decision, manual, rollback
    n: int = 0  # held-out reports the gate drafted
    delta_rougeL: float = 0.0
    p_value: float = 1.0
    promoted_at: float = Field(default_factory=time.time)


class SystemEvalRow(SQLModel, table=True):
    """The gate's evidence: a challenger against a segment's champion on its held-out reports."""

    __tablename__ = "system_evals"

    id: int | None = Field(default=None, primary_key=True)
    run_at: float = Field(default_factory=time.time, index=True)  # one gate run
    institution: str = Field(index=True)
    body_system: str
    champion: str
    challenger: str
    n: int = 0
    champion_rougeL: float = 0.0
    challenger_rougeL: float = 0.0
    delta_rougeL: float = 0.0
    p_value: float = 1.0
    promoted: bool = False
    reason: str = ""
