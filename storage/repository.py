"""The repository: every database access of radflow goes through here."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, func, inspect, text, true, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, SQLModel, col, create_engine, select

from kernel.codes import SIGNED_STATUSES, DraftStatus, ResultStatus
from kernel.errors import StorageError
from model.scoring.aggregate import ROUGE, means
from storage import indexes, pending, summaries, totals
from storage import processed as processed_log
from storage.deliveries import DeliveryLog
from storage.processed import ProcessedLog
from storage.registry import AdapterRegistry
from storage.systems import SystemRegistry
from storage.tables import (
    AlertRow,
    DraftRow,
    DriftChunkRow,
    OrderRow,
    ProcessedMessageRow,
    ScoreRow,
    SignedReportRow,
)

Row = TypeVar("Row", DraftRow, OrderRow, ScoreRow, SignedReportRow)


class Repository(AdapterRegistry, SystemRegistry, ProcessedLog, DeliveryLog):
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
            indexes.ensure(self.engine)
            pending.mark_existing(self.engine)
            totals.backfill(self.engine)
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
    def upsert(self, row: Row, processed: list[ProcessedMessageRow] | None = None, keep: tuple[str, ...] = ()) -> Row:
        """Insert, or update the row with the same (institution, accession); ``processed``: the
        messages this write completes, recorded in the same transaction (storage.processed);
        ``keep``: columns an update leaves as they are."""
        model = type(row)
        values = row.model_dump(exclude={"id"})
        kept = {k: v for k, v in values.items() if k not in keep}
        for _attempt in range(3):
            with Session(self.engine) as session:
                stmt = select(model).where(model.institution == row.institution, model.accession == row.accession)
                if model is ScoreRow:
                    stmt = stmt.with_for_update()  # PostgreSQL: the totals' old values stay the row's until commit
                current = session.exec(stmt).first()
                before = totals.Contribution.of(current) if isinstance(current, ScoreRow) else None
                if current is None:
                    current = model(**values)
                else:
                    for name, value in kept.items():
                        setattr(current, name, value)
                if isinstance(current, DraftRow | SignedReportRow):
                    pending.settle(session, current)
                if isinstance(current, ScoreRow):
                    totals.move(session, before, totals.Contribution.of(current))
                session.add(current)
                processed_log.record(session, processed or [])
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

    def retract(self, institution: str, accession: str, processed: list[ProcessedMessageRow] | None = None) -> None:
        """A cancelled exam: its score goes, its draft is marked retracted, the report says X."""
        with Session(self.engine) as session:
            for score in session.exec(
                select(ScoreRow).where(ScoreRow.institution == institution, ScoreRow.accession == accession)
            ):
                totals.move(session, totals.Contribution.of(score), None)
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
            processed_log.record(session, processed or [])
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
        with self.engine.connect() as connection:
            return summaries.count_keys(connection, SQLModel.metadata.tables[model.__tablename__], accessions, since,
                                        _time_column(model).key)

    def recent_scores(self, limit: int = 200) -> list[ScoreRow]:
        with Session(self.engine) as session:
            return list(session.exec(select(ScoreRow).order_by(col(ScoreRow.created_at).desc()).limit(limit)).all())

    def keyed_scores(self, keys: set[tuple[str, str]]) -> list[Any]:
        """The score rows of the given (institution, accession) keys, newest first."""
        with self.engine.connect() as connection:
            return summaries.keyed_scores(connection, keys)

    def score_summary(self, window: int = 0, keys: set[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
        """Mean ROUGE per institution (over its last ``window`` scores when window > 0; only the
        given (institution, accession) keys when set), computed by the database (storage/summaries.py)."""
        with self.engine.connect() as connection:
            if keys is None:
                return summaries.institution_means(connection, window)
            rows = summaries.keyed_scores(connection, keys)  # no more rows than the caller's keys
        per: dict[str, list[Any]] = defaultdict(list)
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

    def count_in_drift(self, institution: str, accession: str, chunk: int, closed: list[Any]) -> bool:
        """Count a score in drift window ``chunk``, with the rows of the window it closes (the
        chunk, its alerts), in one transaction. False, writing nothing, when the score was
        counted already or is gone (a cancelled exam): each exam enters drift once."""
        with Session(self.engine) as session:
            claimed: Any = session.execute(
                update(ScoreRow).where(col(ScoreRow.institution) == institution, col(ScoreRow.accession) == accession,
                                       col(ScoreRow.drift_chunk) < 0).values(drift_chunk=chunk)
            )
            if claimed.rowcount != 1:
                session.rollback()
                return False
            session.add_all(closed)
            session.commit()
            return True

    def drift_window(self, institution: str, body_system: str, adapter_version: str, chunk: int) -> list[ScoreRow]:
        """The scores counted in one (open) drift window of a segment."""
        with Session(self.engine) as session:
            return list(session.exec(select(ScoreRow).where(
                ScoreRow.institution == institution, ScoreRow.body_system == body_system,
                ScoreRow.adapter_version == adapter_version, ScoreRow.drift_chunk == chunk)).all())

    def alerts(self, limit: int = 50) -> list[AlertRow]:
        with Session(self.engine) as session:
            return list(session.exec(select(AlertRow).order_by(col(AlertRow.created_at).desc()).limit(limit)).all())

    def segment_summary(self, window: int = 0, institution: str | None = None) -> list[dict[str, Any]]:
        """Mean metrics per institution × body system (over the last ``window`` scores if > 0),
        computed by the database (storage/summaries.py)."""
        with self.engine.connect() as connection:
            return summaries.segment_means(connection, window, institution)

    def chart_windows(self, segments: list[tuple[str, str]], limit: int) -> dict[tuple[str, str], summaries.ChartWindows]:
        """Each segment's last ``limit`` drift windows, reference count and latest bands."""
        with self.engine.connect() as connection:
            return summaries.chart_windows(connection, segments, limit)

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
        """Drafts with no signed report yet, oldest first (storage/pending.py)."""
        with Session(self.engine) as session:
            return pending.waiting(session, limit)

    def unscored_pairs(self, limit: int = 500, since: float = 0.0) -> list[DraftRow]:
        """Drafts whose exam is signed with an impression but has no score: a pair whose last
        half was lost with a broker's memory (issue #19), for the score agent's sweep. Such a
        draft is marked ``signed`` (storage.pending), so any draft not retracted is asked.
        ``since``: only pairs whose draft or signed report was stored then or later, each side
        read by its time index, so a sweep reads what is new, not the whole year."""
        def unscored(newer: Any) -> Any:
            return (select(DraftRow).join(SignedReportRow, (col(SignedReportRow.institution) == col(DraftRow.institution))
                                          & (col(SignedReportRow.accession) == col(DraftRow.accession)))
                    .outerjoin(ScoreRow, (col(ScoreRow.institution) == col(DraftRow.institution))
                               & (col(ScoreRow.accession) == col(DraftRow.accession)))
                    .where(col(ScoreRow.id).is_(None), col(DraftRow.status) != DraftStatus.RETRACTED,
                           col(SignedReportRow.status).in_(sorted(SIGNED_STATUSES)), col(SignedReportRow.impression) != "",
                           newer)
                    .order_by(col(DraftRow.created_at)).limit(limit))

        with Session(self.engine) as session:
            if not since:
                return list(session.exec(unscored(true())).all())
            rows = {(d.institution, d.accession): d
                    for newer in (col(DraftRow.created_at) >= since, col(SignedReportRow.received_at) >= since)
                    for d in session.exec(unscored(newer)).all()}
            return sorted(rows.values(), key=lambda d: d.created_at)[:limit]

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
