"""The "done downstream" contract between ingest's journal and the worker's agents.

An inbound message is *done* once every effect it has downstream is durable in storage: a P's
draft (or the decision that it needs none), an F or C's signed report and score, an X's
retraction, an order's row. The agent that owns the effect records the message in
``processed_messages`` in the same transaction as the effect (or, where the effect spans steps,
after the last of them; every effect is idempotent, so a replay in between does no harm). The
journal asks :meth:`ProcessedLog.done` which of its entries it may release, and produces the
rest again. Worklist deliveries are not part of "done": a draft that is stored but not yet
delivered is sent by the quality worker's sweep from storage (streams.delivery).

A message is named by ``ingest.events.message_id`` ("institution|MSH-10"). One whose MSH-10
was empty is recorded under its key (:func:`key_id`), with the time it was last processed,
and is asked about with :meth:`ProcessedLog.done_keys`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select

from kernel.errors import StorageError
from storage.tables import ProcessedMessageRow

#: Ids per IN (...) query: well under SQLite's and PostgreSQL's bound on bound parameters.
CHUNK = 500
#: ``status`` of an order (results use OBR-25: P, F, C, X).
ORDER = "order"


def key_id(institution: str, accession: str, status: str) -> str:
    """The id under which a message without MSH-10 is recorded."""
    return f"key:{institution}|{accession}|{status}"


def processed(message_id: str, institution: str, accession: str, status: str, agent: str) -> ProcessedMessageRow:
    """The row an agent records; ``message_id`` "" (no MSH-10) records the key instead."""
    return ProcessedMessageRow(message_id=message_id or key_id(institution, accession, status),
                               institution=institution, accession=accession, status=status, agent=agent)


def record(session: Session, rows: Iterable[ProcessedMessageRow]) -> None:
    """Add ``rows`` to the caller's transaction: new ids are inserted, known ones get a new time."""
    for row in rows:
        current = session.exec(select(ProcessedMessageRow).where(ProcessedMessageRow.message_id == row.message_id)).first()
        if current is None:
            session.add(ProcessedMessageRow(**row.model_dump(exclude={"id"})))
        else:
            current.processed_at = row.processed_at
            session.add(current)


class ProcessedLog:
    """Part of ``storage.repository.Repository``: the processed-message log."""

    engine: Engine

    def mark_processed(self, rows: Iterable[ProcessedMessageRow]) -> None:
        """Record messages whose effects are already durable (or that had none)."""
        rows = list(rows)
        for _attempt in range(3):
            if not rows:
                return
            with Session(self.engine) as session:
                record(session, rows)
                try:
                    session.commit()
                    return
                except IntegrityError:  # another worker recorded one of them first: now it is known
                    session.rollback()
        raise StorageError("could not record processed messages after 3 attempts")

    def done(self, message_ids: Iterable[str]) -> set[str]:
        """Which of ``message_ids`` (``ingest.events.message_id``) are done downstream."""
        ids, out = sorted({i for i in message_ids if i}), set[str]()
        with Session(self.engine) as session:
            for start in range(0, len(ids), CHUNK):
                part = ids[start:start + CHUNK]
                out.update(session.exec(select(ProcessedMessageRow.message_id)
                                        .where(col(ProcessedMessageRow.message_id).in_(part))).all())
        return out

    def done_keys(self, keys: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], float]:
        """For (institution, accession, status) keys: when a message of that key was last done.

        For messages without MSH-10: the journal releases such an entry when the time returned
        is at or after the time it journaled the entry."""
        wanted = {key_id(*k): k for k in keys}
        ids, out = sorted(wanted), dict[tuple[str, str, str], float]()
        with Session(self.engine) as session:
            for start in range(0, len(ids), CHUNK):
                part = ids[start:start + CHUNK]
                for message_id, at in session.exec(
                    select(ProcessedMessageRow.message_id, ProcessedMessageRow.processed_at)
                    .where(col(ProcessedMessageRow.message_id).in_(part))
                ).all():
                    out[wanted[message_id]] = at
        return out

    def is_processed(self, message_id: str) -> bool:
        return bool(message_id) and bool(self.done([message_id]))

    def forget_processed(self, before: float) -> int:
        """Drop records older than ``before`` (the journal has long released them); returns how many."""
        with Session(self.engine) as session:
            result: Any = session.exec(delete(ProcessedMessageRow).where(col(ProcessedMessageRow.processed_at) < before))  # type: ignore[call-overload]
            session.commit()
            return int(result.rowcount or 0)
