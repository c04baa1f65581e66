"""Which journal messages are done downstream, from the storage database alone.

The embedded broker forgets everything when it stops, so "done" is read from durable rows: a
message is done when every stage it needs has marked it (``processed_messages``) and, for a
preliminary report, its pair is complete: when the exam's signed report (with an impression) is
stored and the draft is live, the score must be stored too. That second rule covers a draft whose
record on the drafts topic died with the broker before the score agent read it: the preliminary
report stays in the journal, is produced again at the next start, and its draft is sent again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import tuple_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from radflow.codes import SIGNED_STATUSES, DraftStatus
from storage.repository import Repository
from storage.tables import DraftRow, ProcessedMessageRow, ScoreRow, SignedReportRow

DRAFT, SCORE, ORDERS = "draft", "score", "orders"
_CHUNK = 400  # ids per IN (...) query: well under SQLite's bound on variables


def mark_processed(repository: Repository, message_ids: Iterable[str], stage: str) -> None:
    """Record that ``stage`` finished these messages (again is fine: a replay marks nothing twice)."""
    wanted = sorted({m for m in message_ids if m})
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start:start + _CHUNK]
        for _attempt in range(3):
            with Session(repository.engine) as session:
                known = set(session.exec(select(ProcessedMessageRow.message_id).where(
                    col(ProcessedMessageRow.message_id).in_(chunk), ProcessedMessageRow.stage == stage)).all())
                session.add_all(ProcessedMessageRow(message_id=m, stage=stage) for m in chunk if m not in known)
                try:
                    session.commit()
                    break
                except IntegrityError:  # another worker marked one meanwhile; look again
                    session.rollback()


def done_seqs(repository: Repository, candidates: Sequence[tuple[int, str, str, str, str]]) -> list[int]:
    """The seqs of (seq, message_id, needs, institution, accession) whose work is all stored."""
    out: list[int] = []
    for start in range(0, len(candidates), _CHUNK):
        chunk = candidates[start:start + _CHUNK]
        with Session(repository.engine) as session:
            marks: set[tuple[str, str]] = {tuple(r) for r in session.exec(  # type: ignore[misc]
                select(ProcessedMessageRow.message_id, ProcessedMessageRow.stage).where(
                    col(ProcessedMessageRow.message_id).in_({c[1] for c in chunk}))).all()}
            exams = {(c[3], c[4]) for c in chunk if DRAFT in c[2].split(",")}
            unscored = _unscored_pairs(session, exams) if exams else set()
        for seq, message_id, needs, institution, accession in chunk:
            stages = [s for s in needs.split(",") if s]
            if all((message_id, s) in marks for s in stages) and (institution, accession) not in unscored:
                out.append(seq)
    return out


def _unscored_pairs(session: Session, exams: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Exams with a live draft and a signed impression but no score (yet)."""
    keys = list(exams)
    signed = set(session.exec(select(SignedReportRow.institution, SignedReportRow.accession).where(
        tuple_(SignedReportRow.institution, SignedReportRow.accession).in_(keys),
        col(SignedReportRow.status).in_(sorted(SIGNED_STATUSES)), SignedReportRow.impression != "")).all())
    if not signed:
        return set()
    drafted = set(session.exec(select(DraftRow.institution, DraftRow.accession).where(
        tuple_(DraftRow.institution, DraftRow.accession).in_(list(signed)),
        DraftRow.status == DraftStatus.DRAFT)).all())
    scored = set(session.exec(select(ScoreRow.institution, ScoreRow.accession).where(
        tuple_(ScoreRow.institution, ScoreRow.accession).in_(list(drafted)))).all()) if drafted else set()
    return {(k[0], k[1]) for k in drafted} - {(k[0], k[1]) for k in scored}
