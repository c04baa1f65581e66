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

from sqlalchemy import Column, Connection, Float, Select, Table, case, cast, func, select, tuple_, union_all
from sqlmodel import SQLModel

import storage.indexes  # noqa: F401  (the indexes join the tables' metadata before create_all)
from model.scoring.aggregate import METRICS, ROUGE

UNION_TERMS = 200  # selects per UNION ALL statement (SQLite allows 500)


def _scores() -> Table:
    return SQLModel.metadata.tables["scores"]


def distinct_values(connection: Connection, column: Column[Any], *where: Any) -> list[str]:
    """The distinct values of an indexed column, in order: one index seek each."""
    found: list[str] = []
    while True:
        stmt = select(column).where(*where).order_by(column).limit(1)
        if found:
            stmt = stmt.where(column > found[-1])
        value = connection.execute(stmt).scalar()
        if value is None:
            return found
        found.append(value)


def segments(connection: Connection, institution: str | None = None) -> list[tuple[str, str]]:
    """Every (institution, body system) with scores, in order."""
    scores = _scores()
    names = [institution] if institution else distinct_values(connection, scores.c.institution)
    return [(name, system) for name in names
            for system in distinct_values(connection, scores.c.body_system, scores.c.institution == name)]


def _metrics(source: Any) -> list[Any]:
    """count, the mean ROUGE and the two rates of the rows of ``source``."""
    def share(column: Any) -> Any:
        return func.avg(case((column != 0, 1.0), else_=0.0))

    return [func.count().label("n"), *(cast(func.avg(source.c[m]), Float).label(m) for m in ROUGE),
            cast(share(source.c.missed), Float).label("missed_rate"),
            cast(share(source.c.over), Float).label("over_rate")]


def _newest(where: Iterable[Any], window: int) -> Any:
    scores = _scores()
    stmt = select(scores).where(*where).order_by(scores.c.created_at.desc(), scores.c.id.desc())
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
            last = _newest((scores.c.institution == name, scores.c.body_system == system), window)
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
    scores = _scores()
    selects = []
    for name in distinct_values(connection, scores.c.institution):
        last = _newest((scores.c.institution == name,), window)
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
    """The last ``limit`` drift windows of each segment (by window index, then id)."""
    chunks = SQLModel.metadata.tables["drift_chunks"]
    out = {}
    for name, system in keys:
        own = (chunks.c.institution == name, chunks.c.body_system == system)
        newest = (chunks.c.chunk.desc(), chunks.c.id.desc())
        latest = connection.execute(select(chunks).where(*own).order_by(*newest).limit(limit)).all()
        reference = connection.execute(select(func.count()).select_from(chunks).where(*own, chunks.c.reference)).scalar()
        bands = connection.execute(select(chunks.c.bands).where(*own, chunks.c.bands.not_in(("", "{}")))
                                   .order_by(*newest).limit(1)).scalar()
        out[(name, system)] = ChartWindows(latest[::-1], int(reference or 0), bands or "")
    return out
