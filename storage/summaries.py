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

from sqlalchemy import Connection, Float, Select, Table, case, cast, func, select, text, tuple_, union_all
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


def _metrics(source: Any) -> list[Any]:
    """count, the mean ROUGE and the two rates of the rows of ``source``."""
    def share(column: Any) -> Any:
        return func.avg(case((column != 0, 1.0), else_=0.0))

    return [func.count().label("n"), *(cast(func.avg(source.c[m]), Float).label(m) for m in ROUGE),
            cast(share(source.c.missed), Float).label("missed_rate"),
            cast(share(source.c.over), Float).label("over_rate")]


def _newest(institution: str, body_system: str | None, window: int) -> Any:
    """The newest ``window`` scores of a segment (or of an institution: ``body_system`` None),
    ordered as their index is, so that each planner reads the index rather than sort."""
    scores = _scores()
    where, order = [scores.c.institution == institution], [scores.c.institution.desc()]
    if body_system is not None:
        where.append(scores.c.body_system == body_system)
        order.append(scores.c.body_system.desc())
    stmt = select(scores).where(*where).order_by(*order, scores.c.created_at.desc(), scores.c.id.desc())
    return (stmt.limit(window) if window else stmt).subquery()


def _run_union(connection: Connection, selects: list[Select[Any]]) -> list[Any]:
    rows: list[Any] = []
    for start in range(0, len(selects), UNION_TERMS):
        part = selects[start:start + UNION_TERMS]
        rows.extend(connection.execute(part[0] if len(part) == 1 else union_all(*part)).all())
    return rows


def segment_means(connection: Connection, window: int = 0, institution: str | None = None) -> list[dict[str, Any]]:
    """Mean metrics per institution × body system over its last ``window`` scores (0: all)."""
    scores = _scores()
    if window:
        selects = []
        for name, system in segments(connection, institution):
            last = _newest(name, system, window)
            selects.append(select(last.c.institution, last.c.body_system, *_metrics(last))
                           .group_by(last.c.institution, last.c.body_system))
        rows = _run_union(connection, selects)
    else:
        stmt = select(scores.c.institution, scores.c.body_system, *_metrics(scores))
        if institution:
            stmt = stmt.where(scores.c.institution == institution)
        rows = list(connection.execute(stmt.group_by(scores.c.institution, scores.c.body_system)).all())
    return [{"institution": r.institution, "body_system": r.body_system, "n": int(r.n),
             **{m: float(getattr(r, m) or 0.0) for m in METRICS}}
            for r in sorted(rows, key=lambda r: (r.institution, r.body_system))]


def institution_means(connection: Connection, window: int = 0) -> list[dict[str, Any]]:
    """Mean ROUGE per institution over its last ``window`` scores (0: all), with the body systems
    those scores cover: per body system sums from SQL, pooled here."""
    selects = []
    for name in sorted({name for name, _system in segments(connection)}):
        last = _newest(name, None, window)
        selects.append(select(last.c.institution, last.c.body_system, func.count().label("n"),
                              *(cast(func.sum(last.c[m]), Float).label(m) for m in ROUGE))
                       .group_by(last.c.institution, last.c.body_system))
    per: dict[str, list[Any]] = {}
    for row in _run_union(connection, selects):
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


def chart_windows(connection: Connection, keys: Iterable[tuple[str, str]], limit: int) -> dict[tuple[str, str], ChartWindows]:
    """The last ``limit`` drift windows of each segment (by window index, then id), in three
    statements whatever the number of segments."""
    chunks = SQLModel.metadata.tables["drift_chunks"]
    keys = list(keys)

    def latest(name: str, system: str, n: int, *where: Any) -> Select[Any]:
        last = (select(chunks).where(chunks.c.institution == name, chunks.c.body_system == system, *where)
                .order_by(chunks.c.institution.desc(), chunks.c.body_system.desc(), chunks.c.chunk.desc(),
                          chunks.c.id.desc()).limit(n).subquery())
        return select(last)

    windows: dict[tuple[str, str], list[Any]] = {key: [] for key in keys}
    for row in _run_union(connection, [latest(name, system, limit) for name, system in keys]):
        windows[(row.institution, row.body_system)].append(row)
    bands = {(r.institution, r.body_system): r.bands for r in _run_union(
        connection, [latest(name, system, 1, chunks.c.bands.not_in(("", "{}"))) for name, system in keys])}
    reference = {(r.institution, r.body_system): int(r.n) for r in connection.execute(
        select(chunks.c.institution, chunks.c.body_system, func.count().label("n")).where(chunks.c.reference)
        .group_by(chunks.c.institution, chunks.c.body_system))} if keys else {}
    return {key: ChartWindows(sorted(rows, key=lambda r: (r.chunk, r.id)), reference.get(key, 0), bands.get(key, ""))
            for key, rows in windows.items()}
