"""The repository: every database access of radflow goes through here."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, func, inspect, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, SQLModel, col, create_engine, select

from model.scoring.aggregate import METRICS, ROUGE, means
from radflow.codes import SIGNED_STATUSES, DraftStatus, ResultStatus
from radflow.errors import StorageError
from storage.registry import AdapterRegistry
from storage.systems import SystemRegistry
from storage.tables import (
    AlertRow,
    DraftRow,
    DriftChunkRow,
    OrderRow,
    ScoreRow,
    SignedReportRow,
)

Row = TypeVar("Row", DraftRow, OrderRow, ScoreRow, SignedReportRow)


class Repository(AdapterRegistry, SystemRegistry):
    def __init__(self, url: str) -> None:
        self.url = url
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            path = url.removeprefix("sqlite:///")
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # Agents call in from worker threads; WAL lets the dashboard read while they write.
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            SQLModel.metadata.create_all(self.engine)
            self._add_missing_columns()
        except OperationalError as exc:
            raise StorageError(f"cannot open the database (RADFLOW_DATABASE_URL): {exc.orig}") from exc

    def _add_missing_columns(self) -> None:
        """Additive migration: a database made by an older radflow gets the columns added since,
        with their defaults. (Renames and removals would need a real migration tool.)"""
        inspector = inspect(self.engine)
        with self.engine.begin() as connection:
            for table in SQLModel.metadata.sorted_tables:
                existing = {c["name"] for c in inspector.get_columns(table.name)}
                for column in table.columns:
                    if column.name in existing:
                        continue
                    arg = getattr(column.default, "arg", None)  # a scalar default; callables (time.time) are left out
                    default = None if arg is None or callable(arg) else arg
                    ddl = f"ALTER TABLE {table.name} ADD COLUMN {column.name} {column.type.compile(self.engine.dialect)}"
                    if default is not None:
                        ddl += f" DEFAULT {_literal(default)}"
                    connection.execute(text(ddl))

    def close(self) -> None:
        self.engine.dispose()

    # -- writes ---------------------------------------------------------------------------
    def upsert(self, row: Row) -> Row:
        """Insert, or update the row with the same (institution, accession)."""
        model = type(row)
        values = row.model_dump(exclude={"id"})
        for _attempt in range(3):
            with Session(self.engine) as session:
                current = session.exec(
                    select(model).where(model.institution == row.institution, model.accession == row.accession)
                ).first()
                if current is None:
                    current = model(**values)
                else:
                    for name, value in values.items():
                        setattr(current, name, value)
                session.add(current)
                try:
                    session.commit()
                except IntegrityError:
                    session.rollback()  # a concurrent insert won; update it on the next try
                    continue
                session.refresh(current)
                return current
        raise StorageError(f"could not upsert {model.__tablename__} after 3 attempts")

    def add(self, row: Any) -> None:
        """Append a row that has no natural key (drift chunks, alerts)."""
        with Session(self.engine) as session:
            session.add(row)
            session.commit()

    def retract(self, institution: str, accession: str) -> None:
        """A cancelled exam: its score goes, its draft is marked retracted, the report says X."""
        with Session(self.engine) as session:
            for score in session.exec(
                select(ScoreRow).where(ScoreRow.institution == institution, ScoreRow.accession == accession)
            ):
                session.delete(score)
            for draft in session.exec(
                select(DraftRow).where(DraftRow.institution == institution, DraftRow.accession == accession)
            ):
                draft.status = DraftStatus.RETRACTED
                session.add(draft)
            for report in session.exec(
                select(SignedReportRow).where(
                    SignedReportRow.institution == institution, SignedReportRow.accession == accession
                )
            ):
                report.status = ResultStatus.CANCELLED
                session.add(report)
            session.commit()

    # -- reads ----------------------------------------------------------------------------
    def get(self, model: type[Row], institution: str, accession: str) -> Row | None:
        with Session(self.engine) as session:
            return session.exec(
                select(model).where(model.institution == institution, model.accession == accession)
            ).first()

    def count(self, model: type[Row], accessions: set[tuple[str, str]] | None = None, since: float = 0.0) -> int:
        with Session(self.engine) as session:
            if accessions is None:
                stmt = select(func.count()).select_from(model)
                if since:
                    stmt = stmt.where(_time_column(model) >= since)
                return int(session.exec(stmt).one())
            stmt2 = select(model.institution, model.accession)
            if since:
                stmt2 = stmt2.where(_time_column(model) >= since)
            return sum(1 for key in session.exec(stmt2).all() if tuple(key) in accessions)

    def recent_scores(self, limit: int = 200) -> list[ScoreRow]:
        with Session(self.engine) as session:
            return list(session.exec(select(ScoreRow).order_by(col(ScoreRow.created_at).desc()).limit(limit)).all())

    def score_summary(self, window: int = 0, keys: set[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
        """Mean ROUGE per institution (over its last ``window`` scores when window > 0; only the
        given (institution, accession) keys when set)."""
        with Session(self.engine) as session:
            rows = session.exec(select(ScoreRow).order_by(col(ScoreRow.created_at).desc())).all()
        if keys is not None:
            rows = [r for r in rows if (r.institution, r.accession) in keys]
        per: dict[str, list[ScoreRow]] = defaultdict(list)
        for row in rows:
            if not window or len(per[row.institution]) < window:
                per[row.institution].append(row)
        out = []
        for institution in sorted(per):
            items = per[institution]
            m = means(items)
            out.append({"institution": institution, "n": len(items), **{k: m[k] for k in ROUGE},
                        "body_systems": sorted({r.body_system for r in items})})
        return out

    def drift_chunks(self, institution: str | None = None, body_system: str | None = None,
                     adapter_version: str | None = None) -> list[DriftChunkRow]:
        with Session(self.engine) as session:
            stmt = select(DriftChunkRow)
            if institution is not None:
                stmt = stmt.where(DriftChunkRow.institution == institution)
            if body_system is not None:
                stmt = stmt.where(DriftChunkRow.body_system == body_system)
            if adapter_version is not None:
                stmt = stmt.where(DriftChunkRow.adapter_version == adapter_version)
            return list(session.exec(stmt.order_by(col(DriftChunkRow.chunk))).all())

    def alerts(self, limit: int = 50) -> list[AlertRow]:
        with Session(self.engine) as session:
            return list(session.exec(select(AlertRow).order_by(col(AlertRow.created_at).desc()).limit(limit)).all())

    def segment_summary(self, window: int = 0) -> list[dict[str, Any]]:
        """Mean metrics per institution × body system (over the last ``window`` scores if > 0)."""
        with Session(self.engine) as session:
            rows = session.exec(select(ScoreRow).order_by(col(ScoreRow.created_at).desc())).all()
        per: dict[tuple[str, str], list[ScoreRow]] = defaultdict(list)
        for row in rows:
            key = (row.institution, row.body_system)
            if not window or len(per[key]) < window:
                per[key].append(row)
        out = []
        for (institution, body_system), items in sorted(per.items()):
            m = means(items)
            out.append({"institution": institution, "body_system": body_system, "n": len(items),
                        **{k: m[k] for k in METRICS}})
        return out

    def pairs(self, institution: str, body_system: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Recent scored pairs of a segment with their texts, for the drill-down page."""
        with Session(self.engine) as session:
            stmt = select(ScoreRow, DraftRow, SignedReportRow).where(
                ScoreRow.institution == institution,
                DraftRow.institution == ScoreRow.institution, DraftRow.accession == ScoreRow.accession,
                SignedReportRow.institution == ScoreRow.institution, SignedReportRow.accession == ScoreRow.accession,
            )
            if body_system:
                stmt = stmt.where(ScoreRow.body_system == body_system)
            rows = session.exec(stmt.order_by(col(ScoreRow.created_at).desc()).limit(limit)).all()
        return [{"score": s, "draft": d, "signed": r} for s, d, r in rows]

    def pending_drafts(self, limit: int = 100) -> list[DraftRow]:
        """Drafts with no signed report yet, oldest first."""
        with Session(self.engine) as session:
            signed = select(SignedReportRow.accession).where(SignedReportRow.institution == DraftRow.institution)
            stmt = (select(DraftRow).where(DraftRow.status == DraftStatus.DRAFT, DraftRow.accession.not_in(signed))  # type: ignore[attr-defined]
                    .order_by(col(DraftRow.created_at)).limit(limit))
            return list(session.exec(stmt).all())

    def set_delivery(self, institution: str, accession: str, outcome: str) -> None:
        with Session(self.engine) as session:
            row = session.exec(
                select(DraftRow).where(DraftRow.institution == institution, DraftRow.accession == accession)
            ).first()
            if row is not None:
                row.delivery = outcome
                session.add(row)
                session.commit()

    def signed_pairs(self, institution: str | None = None, since: float = 0.0,
                     until: float | None = None) -> list[SignedReportRow]:
        """Signed (F) and corrected (C) reports with an impression, received in [since, until]."""
        with Session(self.engine) as session:
            stmt = select(SignedReportRow).where(SignedReportRow.status.in_(sorted(SIGNED_STATUSES)),  # type: ignore[attr-defined]
                                                 SignedReportRow.impression != "")
            if institution:
                stmt = stmt.where(SignedReportRow.institution == institution)
            if since:
                stmt = stmt.where(SignedReportRow.received_at >= since)
            if until is not None:
                stmt = stmt.where(SignedReportRow.received_at <= until)
            return list(session.exec(stmt.order_by(col(SignedReportRow.id))).all())

    def alerts_after(self, alert_id: int) -> list[AlertRow]:
        with Session(self.engine) as session:
            return list(session.exec(select(AlertRow).where(col(AlertRow.id) > alert_id).order_by(col(AlertRow.id))).all())


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _time_column(model: type[Row]) -> Any:
    return col(getattr(model, "received_at" if model in (SignedReportRow, OrderRow) else "created_at"))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
