"""The dashboard's aggregates computed by the database equal the Python computation they replace
(kept here as the reference), on real SQLite and a real PostgreSQL server."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlmodel import SQLModel

from kernel.codes import BODY_SYSTEMS
from model.scoring.aggregate import METRICS, ROUGE, means
from storage.repository import Repository
from storage.tables import DraftRow, DriftChunkRow, ScoreRow, SignedReportRow
from tests.integration.test_storage_backends import _open

INSTITUTIONS = ("HUAXI", "MERCY", "XIHE")


@pytest.fixture(params=["sqlite", "postgresql"])
def filled(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Repository, list[ScoreRow]]]:
    repository = _open(request, tmp_path)
    rows = _scores(3000)
    with repository.engine.begin() as connection:
        connection.execute(insert(SQLModel.metadata.tables["scores"]), [r.model_dump(exclude={"id"}) for r in rows])
    yield repository, rows
    repository.close()


def _scores(n: int) -> list[ScoreRow]:
    """Uneven segments (one institution lacks a system, one segment has fewer than 50 scores)."""
    rng, rows = random.Random(7), []
    for i in range(n):
        institution = rng.choice(INSTITUTIONS)
        system = rng.choice(BODY_SYSTEMS if institution != "MERCY" else BODY_SYSTEMS[:-1])
        if system == "head" and institution == "XIHE" and rng.random() < 0.9:
            system = "chest"
        rows.append(ScoreRow(institution=institution, accession=f"A{i}", body_system=system,
                             rouge1=rng.random(), rouge2=rng.random(), rougeL=rng.random(),
                             missed=rng.choice((0, 0, 1, 2)), over=rng.choice((0, 1)),
                             created_at=1.7e9 + rng.random() * 3e7))
    return rows


# -- the Python computation the SQL replaces (storage/repository.py before issue 22) ------------
def old_score_summary(all_rows: list[ScoreRow], window: int = 0, keys: set[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    rows = sorted(all_rows, key=lambda r: r.created_at, reverse=True)
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


def old_segment_summary(all_rows: list[ScoreRow], window: int = 0) -> list[dict[str, Any]]:
    rows = sorted(all_rows, key=lambda r: r.created_at, reverse=True)
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


def _same(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        for name, value in w.items():
            assert g[name] == (pytest.approx(value, rel=1e-12, abs=1e-12) if isinstance(value, float) else value), name


@pytest.mark.parametrize("window", [50, 7, 0])
def test_summaries_equal_the_python_computation(filled: tuple[Repository, list[ScoreRow]], window: int) -> None:
    repo, rows = filled
    segments = repo.segment_summary(window)
    _same(segments, old_segment_summary(rows, window))
    assert len(segments) == 17 and min(s["n"] for s in segments) < 50  # a segment shorter than the window
    _same(repo.score_summary(window), old_score_summary(rows, window))
    _same(repo.segment_summary(window, "MERCY"),
          [s for s in old_segment_summary(rows, window) if s["institution"] == "MERCY"])


def test_keyed_summary_and_count(filled: tuple[Repository, list[ScoreRow]]) -> None:
    repo, rows = filled
    keys = {(r.institution, r.accession) for r in rows[::3]} | {("XIHE", "absent")}
    _same(repo.score_summary(keys=keys), old_score_summary(rows, keys=keys))
    _same(repo.score_summary(20, keys=keys), old_score_summary(rows, 20, keys=keys))
    assert repo.count(ScoreRow, keys) == len(keys) - 1
    since = sorted(r.created_at for r in rows)[1500]
    assert repo.count(ScoreRow, keys, since=since) == sum(1 for r in rows[::3] if r.created_at >= since)


def test_charts_hold_the_latest_windows_with_the_whole_segments_band(filled: tuple[Repository, list[ScoreRow]]) -> None:
    repo, _rows = filled
    band = json.dumps({m: [0.1, 0.9] for m in METRICS})
    windows = [DriftChunkRow(institution="XIHE", body_system="chest", chunk=i, rougeL=i / 300,
                             reference=2 <= i < 8, bands="{}" if i < 7 else band) for i in range(250)]
    for row in windows:
        repo.add(row)
    repo.add(DriftChunkRow(institution="XIHE", body_system="head", chunk=0, bands="{}"))
    charts = repo.chart_windows([("XIHE", "chest"), ("XIHE", "head"), ("MERCY", "chest")], 100)
    chest = charts[("XIHE", "chest")]
    assert [c.chunk for c in chest.chunks] == list(range(150, 250))
    assert chest.reference == 6 and json.loads(chest.bands) == json.loads(band)
    assert charts[("XIHE", "head")].bands == "" and charts[("MERCY", "chest")].chunks == []


def test_an_old_database_gets_the_indexes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    Repository(url).close()
    repo = Repository(url)
    with repo.engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_scores_segment_newest"))
    repo.close()
    repo = Repository(url)
    with repo.engine.connect() as connection:
        names = {r[0] for r in connection.execute(text("SELECT name FROM sqlite_master WHERE type = 'index'"))}
    repo.close()
    assert {"ix_scores_segment_newest", "ix_scores_institution_newest", "ix_drift_chunks_segment_chunk"} <= names


@pytest.fixture(params=["sqlite", "postgresql"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Repository]:
    repository = _open(request, tmp_path)
    yield repository
    repository.close()


def test_the_worklist_reads_marks_whichever_row_comes_second(repo: Repository) -> None:
    repo.upsert(DraftRow(institution="XIHE", accession="D1", draft="x", created_at=1.0))  # draft, then report
    repo.upsert(SignedReportRow(institution="XIHE", accession="D1", status="F", impression="x"))
    repo.upsert(SignedReportRow(institution="XIHE", accession="D2", status="F", impression="y"))  # report first
    repo.upsert(DraftRow(institution="XIHE", accession="D2", draft="y", created_at=2.0))
    repo.upsert(DraftRow(institution="XIHE", accession="D3", draft="z", created_at=3.0))
    assert [repo.get(DraftRow, "XIHE", a).status for a in ("D1", "D2", "D3")] == ["signed", "signed", "draft"]
    assert [d.accession for d in repo.pending_drafts()] == ["D3"]
    with repo.engine.begin() as connection:  # a race left a mark out: the query still leaves it off
        connection.execute(text("UPDATE drafts SET status = 'draft' WHERE accession = 'D1'"))
    assert [d.accession for d in repo.pending_drafts()] == ["D3"]
    repo.close()
    reopened = Repository(repo.url)  # a database from before the marks gets them when opened
    assert reopened.get(DraftRow, "XIHE", "D1").status == "signed"
    reopened.close()


def test_marking_an_old_database_refreshes_postgresql_statistics(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Planned on statistics that still say every draft waits, PostgreSQL joins every draft with
    every signed report for the worklist (0.3 s at a million, bench/README.md); the marking
    analyzes the table it changed."""
    repository = _open(request, tmp_path, "postgresql")  # only PostgreSQL plans from collected statistics
    keys = [{"institution": "XIHE", "accession": f"A{i}"} for i in range(2000)]
    with repository.engine.begin() as connection:  # as an older radflow left them: signed, not marked
        connection.execute(insert(SQLModel.metadata.tables["drafts"]), [{**k, "status": "draft"} for k in keys])
        connection.execute(insert(SQLModel.metadata.tables["signed_reports"]),
                           [{**k, "status": "F", "impression": "x"} for k in keys[:1990]])
    repository.close()
    reopened = Repository(repository.url)
    with reopened.engine.connect() as connection:
        stats = dict(connection.execute(text(
            "SELECT unnest(most_common_vals::text::text[]), unnest(most_common_freqs) FROM pg_stats"
            " WHERE tablename = 'drafts' AND attname = 'status' AND schemaname = current_schema()")).all())
    reopened.close()
    assert stats["signed"] == pytest.approx(0.995, abs=0.002) and stats["draft"] == pytest.approx(0.005, abs=0.002)
