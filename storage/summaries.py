"""The dashboard's aggregates, computed by the database.

A rolling mean is over the last ``window`` scores of a segment (institution × body system) or of
an institution: newest first by ``created_at``, then by ``id``. Each is one range read of at most
``window`` rows through an index of storage/indexes.py, averaged by SQL, so a request costs the
same at a thousand scores as at a million and no score row reaches Python. The segments
themselves come from a loose index scan (one seek per distinct value), not from a DISTINCT over
the table. ``window`` 0 means every score (a GROUP BY over the table: for tests and small stores).

The meaning is model.scoring.aggregate's: the mean of R-1, R-2, R-L, and the shares of scores
that missed or added a finding (``missed``/``over`` not 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, func, select, text, tuple_
from sqlmodel import SQLModel

import storage.indexes  # noqa: F401  (the indexes join the tables' metadata before create_all)
from model.scoring.aggregate import METRICS, ROUGE

UNION_TERMS = 200  # selects per UNION ALL statement (SQLite allows 500)


def _scores() -> Table:
    return SQLModel.metadata.tables["scores"]


# The next segment after seg in (institution, body_system) order, one index seek a step.
# PostgreSQL seeks on the row value; SQLite seeks on the prefix only for a row value, so it takes
# the next body system of the institution, else the first of the next institution.
_NEXT_PG = ("(SELECT s.{col} FROM scores s WHERE (s.institution, s.body_system) > (seg.institution, seg.body_system)"
            " ORDER BY s.institution, s.body_system LIMIT 1)")
_NEXT_SYSTEM = ("(SELECT s.body_system FROM scores s WHERE s.institution = seg.institution"
                " AND s.body_system > seg.body_system ORDER BY s.institution, s.body_system LIMIT 1)")
_NEXT_INSTITUTION = ("(SELECT s.institution FROM scores s WHERE s.institution > seg.institution"
                     " ORDER BY s.institution LIMIT 1)")
_FIRST_SYSTEM = ("(SELECT s.body_system FROM scores s WHERE s.institution = {institution}"
                 " ORDER BY s.institution, s.body_system LIMIT 1)")
_STEP_PG = f"{_NEXT_PG.format(col='institution')}, {_NEXT_PG.format(col='body_system')}"
_STEP_SQLITE = (f"CASE WHEN {_NEXT_SYSTEM} IS NULL THEN {_NEXT_INSTITUTION} ELSE seg.institution END, "
                f"COALESCE({_NEXT_SYSTEM}, {_FIRST_SYSTEM.format(institution=_NEXT_INSTITUTION)})")
_SEGMENTS = """WITH RECURSIVE seg(institution, body_system) AS (
  SELECT * FROM (SELECT institution, body_system FROM scores ORDER BY institution, body_system LIMIT 1) AS first
  UNION ALL
  SELECT {step} FROM seg WHERE seg.institution IS NOT NULL)
SELECT institution, body_system FROM seg WHERE institution IS NOT NULL"""


def segments(connection: Connection, institution: str | None = None) -> list[tuple[str, str]]:
    """Every (institution, body system) with scores, in order: a loose index scan (one seek per
    segment, in one statement), not a DISTINCT over the table."""
    step = _STEP_PG if connection.dialect.name == "postgresql" else _STEP_SQLITE
    found = [(r.institution, r.body_system) for r in connection.execute(text(_SEGMENTS.format(step=step)))]
    return [key for key in found if institution is None or key[0] == institution]


# SQL text: building SQLAlchemy constructs for 18 subqueries cost ten times their execution.
# Column names are quoted (rougeL is mixed case; over is a keyword). CASTs keep PostgreSQL's
# avg of a CASE a float (numeric otherwise).
_MEANS = ('count(*) AS n, CAST(avg("rouge1") AS DOUBLE PRECISION) AS rouge1, '
          'CAST(avg("rouge2") AS DOUBLE PRECISION) AS rouge2, CAST(avg("rougeL") AS DOUBLE PRECISION) AS "rougeL", '
          'CAST(avg(CASE WHEN "missed" <> 0 THEN 1.0 ELSE 0.0 END) AS DOUBLE PRECISION) AS missed_rate, '
          'CAST(avg(CASE WHEN "over" <> 0 THEN 1.0 ELSE 0.0 END) AS DOUBLE PRECISION) AS over_rate')
_SUMS = ('count(*) AS n, CAST(sum("rouge1") AS DOUBLE PRECISION) AS rouge1, '
         'CAST(sum("rouge2") AS DOUBLE PRECISION) AS rouge2, CAST(sum("rougeL") AS DOUBLE PRECISION) AS "rougeL"')
# A segment's (or an institution's) newest scores, ordered as their index is, so that each
# planner reads the index rather than sort.
_NEWEST_OF_SEGMENT = ("SELECT * FROM scores WHERE institution = :i{k} AND body_system = :b{k} "
                      "ORDER BY institution DESC, body_system DESC, created_at DESC, id DESC LIMIT :window")
_NEWEST_OF_INSTITUTION = ("SELECT * FROM scores WHERE institution = :i{k} "
                          "ORDER BY institution DESC, created_at DESC, id DESC LIMIT :window")


def _union(connection: Connection, term: str, keys: Sequence[tuple[str, ...]], **params: Any) -> list[Any]:
    """``term`` (with {k} in its parameter names) for every key, UNION ALL, in as few statements
    as SQLite allows."""
    rows: list[Any] = []
    for start in range(0, len(keys), UNION_TERMS):
        part = keys[start:start + UNION_TERMS]
        sql = " UNION ALL ".join(term.format(k=k) for k in range(len(part)))
        values = dict(params)
        for k, key in enumerate(part):
            values.update({f"i{k}": key[0]} | ({f"b{k}": key[1]} if len(key) > 1 else {}))
        rows.extend(connection.execute(text(sql), values).all())
    return rows


def segment_means(connection: Connection, window: int = 0, institution: str | None = None) -> list[dict[str, Any]]:
    """Mean metrics per institution × body system over its last ``window`` scores (0: all)."""
    if window:
        term = (f"SELECT institution, body_system, {_MEANS} FROM ({_NEWEST_OF_SEGMENT}) AS last{{k}} "
                "GROUP BY institution, body_system")
        rows = _union(connection, term, segments(connection, institution), window=window)
    else:
        where = "WHERE institution = :institution " if institution else ""
        rows = list(connection.execute(text(f"SELECT institution, body_system, {_MEANS} FROM scores {where}"
                                            "GROUP BY institution, body_system"), {"institution": institution}))
    return [{"institution": r.institution, "body_system": r.body_system, "n": int(r.n),
             **{m: float(getattr(r, m) or 0.0) for m in METRICS}}
            for r in sorted(rows, key=lambda r: (r.institution, r.body_system))]


def institution_means(connection: Connection, window: int = 0) -> list[dict[str, Any]]:
    """Mean ROUGE per institution over its last ``window`` scores (0: all), with the body systems
    those scores cover: per body system sums from SQL, pooled here."""
    names = sorted({(name,) for name, _system in segments(connection)})
    newest = _NEWEST_OF_INSTITUTION if window else _NEWEST_OF_INSTITUTION.removesuffix(" LIMIT :window")
    term = f"SELECT institution, body_system, {_SUMS} FROM ({newest}) AS last{{k}} GROUP BY institution, body_system"
    per: dict[str, list[Any]] = {}
    for row in _union(connection, term, names, window=window):
        per.setdefault(row.institution, []).append(row)
    out = []
    for name in sorted(per):
        parts = per[name]
        n = sum(int(p.n) for p in parts)
        out.append({"institution": name, "n": n, **{m: sum(float(getattr(p, m)) for p in parts) / (n or 1) for m in ROUGE},
                    "body_systems": sorted(p.body_system for p in parts)})
    return out


KEYS_PER_QUERY = 500


def count_keys(connection: Connection, table: Table, keys: Iterable[tuple[str, str]], since: float = 0.0,
               time_column: str = "created_at") -> int:
    """How many of the (institution, accession) keys have a row (received at or after ``since``)."""
    wanted = sorted(set(keys))
    total = 0
    for start in range(0, len(wanted), KEYS_PER_QUERY):
        stmt = select(func.count()).select_from(table).where(
            tuple_(table.c.institution, table.c.accession).in_(wanted[start:start + KEYS_PER_QUERY]))
        if since:
            stmt = stmt.where(table.c[time_column] >= since)
        total += int(connection.execute(stmt).scalar() or 0)
    return total


def keyed_scores(connection: Connection, keys: Iterable[tuple[str, str]]) -> list[Any]:
    """The score rows of the given keys, newest first (as many rows as keys at most)."""
    scores, wanted = _scores(), sorted(set(keys))
    rows: list[Any] = []
    for start in range(0, len(wanted), KEYS_PER_QUERY):
        rows.extend(connection.execute(select(scores).where(
            tuple_(scores.c.institution, scores.c.accession).in_(wanted[start:start + KEYS_PER_QUERY]))).all())
    return sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)


@dataclass(frozen=True)
class ChartWindows:
    """What a segment's drift chart shows: its latest windows, oldest first, with what the chart
    says of the rest: how many reference windows the segment has in all, and the bands (JSON)
    of its latest window that carries them."""

    chunks: Sequence[Any]
    reference: int
    bands: str


_LATEST_WINDOWS = ("SELECT * FROM (SELECT * FROM drift_chunks WHERE institution = :i{k} AND body_system = :b{k}"
                   "{extra} ORDER BY institution DESC, body_system DESC, chunk DESC, id DESC LIMIT :n) AS w{k}")
_BANDED = " AND bands NOT IN ('', '{{}}')"  # a window that carries its segment's bands


def chart_windows(connection: Connection, keys: Iterable[tuple[str, str]], limit: int) -> dict[tuple[str, str], ChartWindows]:
    """The last ``limit`` drift windows of each segment (by window index, then id), in three
    statements whatever the number of segments."""
    keys = list(keys)
    windows: dict[tuple[str, str], list[Any]] = {key: [] for key in keys}
    for row in _union(connection, _LATEST_WINDOWS.format(k="{k}", extra=""), keys, n=limit):
        windows[(row.institution, row.body_system)].append(row)
    bands = {(r.institution, r.body_system): r.bands
             for r in _union(connection, _LATEST_WINDOWS.format(k="{k}", extra=_BANDED), keys, n=1)}
    reference = {(r.institution, r.body_system): int(r.n) for r in connection.execute(text(
        "SELECT institution, body_system, count(*) AS n FROM drift_chunks WHERE reference = :yes "
        "GROUP BY institution, body_system"), {"yes": True})} if keys else {}
    return {key: ChartWindows(sorted(rows, key=lambda r: (r.chunk, r.id)), reference.get(key, 0), bands.get(key, ""))
            for key, rows in windows.items()}
