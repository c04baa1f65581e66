"""Storage on real SQLite files."""

import sqlite3
from pathlib import Path

from storage.repository import Repository
from storage.tables import DraftRow, ScoreRow


def test_upsert_never_duplicates(tmp_path: Path) -> None:
    repo = Repository(f"sqlite:///{tmp_path / 'r.sqlite'}")
    repo.upsert(DraftRow(institution="A", accession="1", draft="x"))
    repo.upsert(DraftRow(institution="A", accession="1", draft="y"))
    assert repo.count(DraftRow) == 1 and repo.get(DraftRow, "A", "1").draft == "y"


def test_database_of_an_older_version_gets_new_columns(tmp_path: Path) -> None:
    # regression: a drafts table made before `status` and `delivery` existed crashed the agents
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE drafts (id INTEGER PRIMARY KEY, institution VARCHAR NOT NULL, accession VARCHAR NOT NULL,"
                   " body_system VARCHAR, language VARCHAR, findings VARCHAR, draft VARCHAR, model_id VARCHAR,"
                   " adapter_version VARCHAR, template_id VARCHAR, guard VARCHAR, latency_ms FLOAT, created_at FLOAT,"
                   " UNIQUE (institution, accession))")
        db.execute("INSERT INTO drafts (institution, accession, draft, body_system, language, findings, model_id,"
                   " adapter_version, template_id, guard, latency_ms, created_at)"
                   " VALUES ('A', '1', 'old', 'chest', 'zh', '', '', '', '', '', 0, 0)")
    repo = Repository(f"sqlite:///{path}")
    row = repo.get(DraftRow, "A", "1")
    assert row.draft == "old" and row.status == "draft" and row.delivery == ""
    assert [r.accession for r in repo.pending_drafts()] == ["1"]
    repo.upsert(ScoreRow(institution="A", accession="1", rougeL=0.5))
    assert repo.get(ScoreRow, "A", "1").missed == 0
