"""Drafts on their way to the RIS worklist: claimed, sent, recorded, and sent again until a RIS
answers (issue #19: a draft made while the RIS was down, or before a stop, is delivered later).

A sender first claims the draft (``claim_delivery``: one conditional UPDATE, so two senders, the
worklist agent and the sweep or two quality workers, never send one draft at once), then records
the outcome (``finish_delivery``). A claim whose sender died lapses after its lease; a failure
is retried after a backoff that doubles.

Which drafts are due is a question of delivery state alone: a draft marked ``signed``
(storage.pending: its signed report was stored, perhaps while the RIS was down) is delivered like
any other; only a retracted draft is never sent. A draft of an institution with no route
(RADFLOW_WORKLIST_ROUTES, as the worker that meets it was started) is marked ``unrouted`` and
leaves the due ones: left open, such drafts would pile up oldest-first in every sweep and hide the
routed ones behind them. A route added later sends the drafts made from then on, not those.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from kernel.codes import DELIVERED_ACKS, Delivery, DraftStatus
from storage.tables import DraftRow

SENDING = "sending"
#: Outcomes after which a draft is sent again: not yet tried, claimed by a sender that may have died, failed.
OPEN = ("", SENDING, "failed")


class DeliveryLog:
    """Part of ``storage.repository.Repository``: the worklist delivery of each draft."""

    engine: Engine

    def claim_delivery(self, institution: str, accession: str, now: float, lease: float) -> DraftRow | None:
        """The draft, claimed for ``lease`` seconds; None when it is delivered, rejected, retracted,
        claimed by another sender, backing off, or absent."""
        with Session(self.engine) as session:
            result: Any = session.execute(
                update(DraftRow).where(col(DraftRow.institution) == institution, col(DraftRow.accession) == accession,
                                       col(DraftRow.status) != DraftStatus.RETRACTED, col(DraftRow.delivery).in_(OPEN),
                                       col(DraftRow.delivery_due) <= now)
                .values(delivery=SENDING, delivery_due=now + lease, delivery_attempts=DraftRow.delivery_attempts + 1)
            )
            session.commit()
            if result.rowcount != 1:
                return None
            return session.exec(select(DraftRow).where(DraftRow.institution == institution,
                                                       DraftRow.accession == accession)).first()

    def mark_unrouted(self, institution: str, accession: str, now: float) -> bool:
        """Take a draft out of the due ones: its institution has no route. Only a draft no sender
        holds: never sent, failed, or claimed by a sender whose lease ran out."""
        with Session(self.engine) as session:
            result: Any = session.execute(
                update(DraftRow).where(col(DraftRow.institution) == institution, col(DraftRow.accession) == accession,
                                       col(DraftRow.delivery).in_(OPEN),
                                       (col(DraftRow.delivery) != SENDING) | (col(DraftRow.delivery_due) <= now))
                .values(delivery=Delivery.UNROUTED.value))
            session.commit()
            return bool(result.rowcount == 1)

    def finish_delivery(self, draft_id: int, outcome: str, now: float, retry_at: float) -> None:
        """Record a RIS's answer (or "failed", to be tried again at ``retry_at``)."""
        with Session(self.engine) as session:
            row = session.get(DraftRow, draft_id)
            if row is None:
                return
            row.delivery = outcome
            row.delivery_due = retry_at
            if outcome in DELIVERED_ACKS:
                row.delivered_at = now
            session.add(row)
            session.commit()

    def undelivered(self, now: float, limit: int = 500) -> list[tuple[str, str]]:
        """(institution, accession) of drafts due to be sent: never sent, failed, or claimed by a
        sender that did not finish; oldest first."""
        with Session(self.engine) as session:
            rows = session.exec(
                select(DraftRow.institution, DraftRow.accession)
                .where(col(DraftRow.status) != DraftStatus.RETRACTED, col(DraftRow.delivery).in_(OPEN),
                       col(DraftRow.delivery_due) <= now)
                .order_by(col(DraftRow.created_at)).limit(limit)
            ).all()
        return [(i, a) for i, a in rows]
