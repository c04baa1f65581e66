"""The running sums of served_totals (storage/totals.py) equal the GROUP BY over the scores they
replace, through every kind of score write: inserts, a correction, a replay, a retraction, and
the back-fill of a database made before the table existed. PostgreSQL: tests/integration/test_totals.py."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from storage.repository import Repository
from storage.tables import DraftRow, ScoreRow
from streams.serving_view import segment_systems, served_summary


def grouped(repository: Repository) -> list[dict[str, Any]]:
    """The GROUP BY over all scores (served_by_system before the running sums)."""
    with repository.engine.connect() as connection:
        rows = connection.execute(text(
            'SELECT institution, body_system, system, count(*), avg(rouge1), avg(rouge2), avg("rougeL") FROM scores'
            " GROUP BY institution, body_system, system ORDER BY institution, body_system, system")).all()
    return [{"institution": i, "body_system": b, "system": s, "n": int(n), "rouge1": float(r1), "rouge2": float(r2),
             "rougeL": float(rl)} for i, b, s, n, r1, r2, rl in rows]


def assert_totals_match(repository: Repository) -> None:
    served, expected = repository.served_by_system(), grouped(repository)
    assert [(r["institution"], r["body_system"], r["system"], r["n"]) for r in served] == \
        [(r["institution"], r["body_system"], r["system"], r["n"]) for r in expected]
    for got, want in zip(served, expected, strict=True):
        for metric in ("rouge1", "rouge2", "rougeL"):
            assert got[metric] == pytest.approx(want[metric], abs=1e-9)


def assert_same(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert [{k: v for k, v in r.items() if not k.startswith("rouge")} for r in got] == \
        [{k: v for k, v in r.items() if not k.startswith("rouge")} for r in want]
    for a, b in zip(got, want, strict=True):
        assert [a[m] for m in ("rouge1", "rouge2", "rougeL")] == pytest.approx([b[m] for m in ("rouge1", "rouge2", "rougeL")])


def _score(rng: random.Random, i: int) -> ScoreRow:
    return ScoreRow(institution=rng.choice(("A", "B")), accession=str(i), body_system=rng.choice(("chest", "head")),
                    system=rng.choice(("retrieval", "consensus", "")), rouge1=rng.random(), rouge2=rng.random(),
                    rougeL=rng.random())


def exercise(repository: Repository) -> None:
    """Every kind of score write, the sums checked against the GROUP BY after each."""
    rng = random.Random(3)
    scores = [_score(rng, i) for i in range(60)]
    for score in scores:
        repository.upsert(ScoreRow(**score.model_dump()))
    assert_totals_match(repository)
    assert sum(r["n"] for r in repository.served_by_system()) == 60
    before = repository.served_by_system()
    for score in scores[:10]:  # a replay of identical scores: nothing moves
        repository.upsert(ScoreRow(**score.model_dump()))
    assert repository.served_by_system() == before
    corrected = scores[0].model_copy(update={"rougeL": 0.999, "rouge1": 0.0})  # a corrected report, rescored
    repository.upsert(corrected)
    assert_totals_match(repository)
    moved = scores[1].model_copy(update={"system": "moved", "body_system": "spine"})  # another key entirely
    repository.upsert(moved)
    assert_totals_match(repository)
    assert any(r["system"] == "moved" and r["n"] == 1 for r in repository.served_by_system())
    for score in scores[2:12]:  # cancelled exams; a second retraction is a replay
        repository.retract(score.institution, score.accession)
        repository.retract(score.institution, score.accession)
    assert_totals_match(repository)
    assert sum(r["n"] for r in repository.served_by_system()) == 50
    repository.retract(moved.institution, moved.accession)  # the key's last score: it leaves the summary
    assert all(r["system"] != "moved" for r in repository.served_by_system())
    assert_totals_match(repository)


def backfilled(repository: Repository) -> Repository:
    """The same database as an older radflow left it (no served_totals), opened again."""
    with repository.engine.begin() as connection:
        connection.execute(text("DROP TABLE served_totals"))
    url = repository.url
    repository.close()
    return Repository(url)


def test_the_running_sums_equal_the_group_by_through_every_write(tmp_path: Path) -> None:
    exercise(Repository(f"sqlite:///{tmp_path / 'db.sqlite'}"))


def test_an_older_database_is_back_filled_once_when_opened(tmp_path: Path) -> None:
    repository = Repository(f"sqlite:///{tmp_path / 'db.sqlite'}")
    exercise(repository)
    expected = repository.served_by_system()
    repository = backfilled(repository)
    assert_same(repository.served_by_system(), expected)
    assert_totals_match(repository)
    repository.upsert(ScoreRow(institution="A", accession="new", body_system="chest", system="retrieval", rougeL=0.5))
    repository.close()
    repository = Repository(repository.url)  # opened again: no second back-fill doubles the sums
    assert_totals_match(repository)


def test_a_segment_without_a_champion_is_served_by_its_newest_drafts_system(tmp_path: Path) -> None:
    repository = Repository(f"sqlite:///{tmp_path / 'db.sqlite'}")
    for i, (system, at) in enumerate([("", 1.0), ("retrieval", 2.0), ("retrieval", 3.0), ("consensus", 4.0)]):
        repository.upsert(DraftRow(institution="A", accession=str(i), body_system="chest", draft="d", system=system,
                                   created_at=at))
        repository.upsert(ScoreRow(institution="A", accession=str(i), body_system="chest", system=system, rougeL=0.5))
    systems = segment_systems(repository)
    assert systems == {("A", "chest"): {"serving": "consensus", "drafted": {"retrieval": 2, "consensus": 1}}}
    repository.promote_system("A", "chest", "retrieval", "test")
    assert segment_systems(repository)[("A", "chest")]["serving"] == "retrieval"
    assert served_summary(repository)["served"][0]["serving"] == ["retrieval"]
