"""Which drafts wait for a radiologist: the worklist's question, answered from an index.

A draft waits while its status is ``draft`` and no signed report has the same key. Asked as an
anti-join alone, the question reads every draft of the year to find the few that wait; so a
draft whose signed report is stored is marked ``signed`` (in the transaction of whichever of the
two rows comes second), and the worklist reads ``(status, created_at)`` from the oldest waiting
draft on. The anti-join stays in the query: a mark missed by a race between two workers costs a
skipped row, never a wrong one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, exists, text, update
from sqlmodel import Session, col, select

from kernel.codes import DraftStatus
from storage.tables import DraftRow, SignedReportRow


def _signed(institution: Any, accession: Any) -> Any:
    return exists().where(SignedReportRow.institution == institution, SignedReportRow.accession == accession)


def settle(session: Session, row: DraftRow | SignedReportRow) -> None:
    """Mark the draft of a key signed, whichever of draft and signed report is being written."""
    if isinstance(row, SignedReportRow):
        session.execute(update(DraftRow).where(
            col(DraftRow.institution) == row.institution, col(DraftRow.accession) == row.accession,
            col(DraftRow.status) == DraftStatus.DRAFT).values(status=DraftStatus.SIGNED.value))
    elif row.status == DraftStatus.DRAFT and session.exec(select(_signed(row.institution, row.accession))).one():
        row.status = DraftStatus.SIGNED.value


def waiting(session: Session, limit: int) -> list[DraftRow]:
    """Drafts with no signed report yet, oldest first."""
    stmt = (select(DraftRow).where(DraftRow.status == DraftStatus.DRAFT,
                                   ~_signed(DraftRow.institution, DraftRow.accession))
            .order_by(col(DraftRow.created_at), col(DraftRow.id)).limit(limit))
    return list(session.exec(stmt).all())


def mark_existing(engine: Engine) -> None:
    """A database of an older radflow: mark the drafts that were signed before marks existed
    (reads only the drafts still marked ``draft``, so a no-op after the first time)."""
    with engine.begin() as connection:
        marked = connection.execute(text(
            "UPDATE drafts SET status = :signed WHERE status = :draft AND EXISTS (SELECT 1 FROM signed_reports s"
            " WHERE s.institution = drafts.institution AND s.accession = drafts.accession)"),
            {"signed": DraftStatus.SIGNED.value, "draft": DraftStatus.DRAFT.value}).rowcount
        if marked and engine.dialect.name == "postgresql":
            # PostgreSQL's statistics still say every draft waits until autovacuum gets to the table
            # (a minute or more); planned on them, the worklist hash-joins every draft with every
            # signed report (0.3 s at a million) instead of reading the few waiting ones by the index.
            connection.execute(text("ANALYZE drafts"))
