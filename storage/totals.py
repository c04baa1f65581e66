"""All-time scores per institution × body system × drafting system, as running sums.

``/api/summary`` reports every score so far per system; asked as a GROUP BY over ``scores`` that
reads the whole year on every refresh. So each score write moves the sums of ``served_totals``
by its difference, in the write's own transaction: a new score adds itself, a replaced one (a
correction) takes its old values off first, a retracted one takes itself off, and a replay of
an identical score changes nothing. The update is ``n = n + :dn`` on a row made by
``INSERT ... ON CONFLICT DO NOTHING``, so two quality workers never lose each other's sums.
A database made before the table existed is back-filled once, when opened (``backfill``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import Engine, text
from sqlmodel import Session

from storage.tables import ScoreRow


class Contribution(NamedTuple):
    """What one score adds to the sums of its key."""

    institution: str
    body_system: str
    system: str
    rouge1: float
    rouge2: float
    rougeL: float

    @classmethod
    def of(cls, score: ScoreRow) -> Contribution:
        return cls(score.institution, score.body_system, score.system, score.rouge1, score.rouge2, score.rougeL)


_MAKE = text(
    "INSERT INTO served_totals (institution, body_system, system, n, sum_rouge1, sum_rouge2, sum_rougel)"
    " VALUES (:institution, :body_system, :system, 0, 0, 0, 0)"
    " ON CONFLICT (institution, body_system, system) DO NOTHING")
_MOVE = text(
    "UPDATE served_totals SET n = n + :dn, sum_rouge1 = sum_rouge1 + :d1, sum_rouge2 = sum_rouge2 + :d2,"
    " sum_rougel = sum_rougel + :dl"
    " WHERE institution = :institution AND body_system = :body_system AND system = :system")


def move(session: Session, old: Contribution | None, new: Contribution | None) -> None:
    """Replace ``old``'s share of the sums by ``new``'s (either may be None: an insert, a delete)."""
    if old == new:
        return  # a replay of the same score, or nothing at all
    deltas: dict[tuple[str, str, str], list[float]] = {}
    for sign, part in ((-1.0, old), (1.0, new)):
        if part is not None:
            delta = deltas.setdefault(part[:3], [0.0, 0.0, 0.0, 0.0])
            for i, value in enumerate((1.0, part.rouge1, part.rouge2, part.rougeL)):
                delta[i] += sign * value
    for (institution, body_system, system), (dn, d1, d2, dl) in deltas.items():
        if dn == 0 and d1 == 0 and d2 == 0 and dl == 0:
            continue
        key = {"institution": institution, "body_system": body_system, "system": system}
        session.execute(_MAKE, key)
        session.execute(_MOVE, {**key, "dn": int(dn), "d1": d1, "d2": d2, "dl": dl})


def read(session: Session) -> list[dict[str, Any]]:
    """n and mean R-1/R-2/R-L per key that has scores, sorted by key."""
    rows = session.execute(text(
        "SELECT institution, body_system, system, n, sum_rouge1, sum_rouge2, sum_rougel FROM served_totals"
        " WHERE n > 0 ORDER BY institution, body_system, system")).all()
    return [{"institution": i, "body_system": b, "system": s, "n": int(n), "rouge1": float(r1) / n,
             "rouge2": float(r2) / n, "rougeL": float(rl) / n} for i, b, s, n, r1, r2, rl in rows]


def backfill(engine: Engine) -> None:
    """A database whose scores predate the table: sum them once (one GROUP BY). A no-op when the
    table has rows, or there are no scores; two processes opening at once insert the same rows,
    and the second's are dropped by ON CONFLICT."""
    with engine.begin() as connection:
        if connection.execute(text("SELECT 1 FROM served_totals LIMIT 1")).first() is not None:
            return
        if connection.execute(text("SELECT 1 FROM scores LIMIT 1")).first() is None:
            return
        connection.execute(text(
            'INSERT INTO served_totals (institution, body_system, system, n, sum_rouge1, sum_rouge2, sum_rougel)'
            ' SELECT institution, body_system, system, count(*), sum(rouge1), sum(rouge2), sum("rougeL")'
            ' FROM scores WHERE 1 = 1 GROUP BY institution, body_system, system'
            ' ON CONFLICT (institution, body_system, system) DO NOTHING'))
