"""The repository against real SQLite and a real PostgreSQL server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from storage.repository import Repository
from storage.tables import AlertRow, DraftRow, ScoreRow, SignedReportRow


@pytest.fixture(params=["sqlite", "postgresql"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Repository]:
    repository = _open(request, tmp_path)
    yield repository
    repository.close()


def _open(request: pytest.FixtureRequest, tmp_path: Path, kind: str = "") -> Repository:
    if (kind or request.param) == "sqlite":
        return Repository(f"sqlite:///{tmp_path / 'r.sqlite'}")
    url = request.getfixturevalue("postgres_url")
    schema = f"t{uuid.uuid4().hex[:8]}"  # each test in its own schema of the one server
    from sqlmodel import create_engine

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    return Repository(f"{url}?options=-csearch_path%3D{schema}")


def test_upserts_are_idempotent(repo: Repository) -> None:
    for text_ in ("first", "second", "第三"):
        repo.upsert(DraftRow(institution="XIHE", accession="A1", draft=text_, body_system="chest"))
    assert repo.count(DraftRow) == 1 and repo.get(DraftRow, "XIHE", "A1").draft == "第三"


def test_pending_pairs_summary_and_retract(repo: Repository) -> None:
    for n in range(3):
        repo.upsert(DraftRow(institution="XIHE", accession=f"A{n}", draft="右肺结节。", body_system="chest"))
    repo.upsert(SignedReportRow(institution="XIHE", accession="A0", status="F", impression="右肺结节。",
                                body_system="chest"))
    assert [d.accession for d in repo.pending_drafts()] == ["A1", "A2"]
    repo.upsert(ScoreRow(institution="XIHE", accession="A0", body_system="chest", rougeL=1.0, missed=1))
    [segment] = repo.segment_summary()
    assert segment["n"] == 1 and segment["missed_rate"] == 1.0
    [pair] = repo.pairs("XIHE", "chest")
    assert pair["draft"].draft == pair["signed"].impression
    repo.retract("XIHE", "A0")
    assert repo.get(ScoreRow, "XIHE", "A0") is None and repo.get(DraftRow, "XIHE", "A0").status == "retracted"
    repo.add(AlertRow(institution="XIHE", body_system="chest", metric="rougeL", value=0.1, low=0.5, high=0.9))
    assert repo.alerts()[0].metric == "rougeL"


def test_old_database_is_migrated(repo: Repository) -> None:
    with repo.engine.begin() as connection:  # a database from before delivery, and so before its index
        connection.execute(text("DROP INDEX ix_drafts_delivery"))
        connection.execute(text("ALTER TABLE drafts DROP COLUMN delivery"))
    repo.close()
    migrated = Repository(repo.url)
    try:
        migrated.upsert(DraftRow(institution="X", accession="1", draft="d"))
        assert migrated.get(DraftRow, "X", "1").delivery == ""
        assert "ix_drafts_delivery" in {i["name"] for i in inspect(migrated.engine).get_indexes("drafts")}
    finally:
        migrated.close()


async def test_worker_pipeline_on_postgresql(settings, start_worker, broker, postgres_url) -> None:
    """The whole flow with PostgreSQL as the database, as docker-compose runs it."""
    import dataclasses

    from sqlmodel import create_engine

    from ingest.mllp import MLLPClient, ack_code
    from ingest.service import start_ingest
    from radflow.demodata import expected_ack, feed, generate_reports
    from streams.topics import TopicNames
    from tests.integration.conftest import wait_for

    database = f"d{uuid.uuid4().hex[:8]}"
    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {database}"))
    engine.dispose()
    url = postgres_url.rsplit("/", 1)[0] + f"/{database}"
    settings = dataclasses.replace(settings, database_url=url)
    start_worker(settings)
    reports = generate_reports(1, seed=44)
    items = list(feed(reports, seed=44))
    service = await start_ingest("127.0.0.1", 0, TopicNames(settings.topic_prefix).ingest(),
                                 bootstrap_servers=broker.bootstrap_servers)
    try:
        client = await MLLPClient.connect("127.0.0.1", service.server.port)
        assert [ack_code(await client.send(i.message)) for i in items] == [expected_ack(i.report) for i in items]
        await client.close()
    finally:
        await service.stop()
    repo = Repository(url)
    try:
        await wait_for(lambda: repo.count(ScoreRow) == len(reports), 90, "scores in PostgreSQL")
        assert repo.count(DraftRow) == repo.count(SignedReportRow) == len(reports)
    finally:
        repo.close()


def test_processed_messages_answer_which_are_done(repo: Repository) -> None:
    """The journal's question (storage.processed): recorded with an effect, in its transaction."""
    from storage.processed import processed

    p = processed("XIHE|M1", "XIHE", "A1", "P", "draft")
    for _ in range(2):  # a replay records the same message again: still one row
        repo.upsert(DraftRow(institution="XIHE", accession="A1", draft="d"), processed=[p])
    repo.mark_processed([processed("", "XIHE", "A2", "F", "score")])  # no MSH-10: kept by its key
    assert repo.done(["XIHE|M1", "XIHE|M2", ""]) == {"XIHE|M1"}
    assert repo.is_processed("XIHE|M1") and not repo.is_processed("")
    assert set(repo.done_keys([("XIHE", "A2", "F"), ("XIHE", "A2", "C")])) == {("XIHE", "A2", "F")}
    assert repo.done([f"XIHE|M{n}" for n in range(1200)]) == {"XIHE|M1"}  # more ids than one IN (...) takes
    assert repo.forget_processed(before=float("inf")) == 2 and repo.done(["XIHE|M1"]) == set()


async def test_replays_change_nothing_on_either_backend(repo: Repository) -> None:
    """The agents' writes on a replay (issue #19): no-ops on SQLite and PostgreSQL alike."""
    import time

    from ingest.events import ReportEvent
    from streams.agents.score import ScoreDeps, score_one, score_stored
    from streams.records import DraftRecord
    from streams.stats import new_stats

    sent: list[object] = []

    async def send(key: str, record: object) -> None:
        sent.append(record)

    deps = ScoreDeps(repo, {}, send, new_stats())
    draft = DraftRecord(institution="XIHE", accession="A1", body_system="chest", language="zh", findings="f",
                        draft="右肺结节。", model_id="m")
    repo.upsert(draft.to_row())
    final = ReportEvent(institution="XIHE", accession="A1", status="F", exam="CT", exam_code="CT", body_system="chest",
                        modality="CT", findings="f", impression="右肺结节。", language="zh", message_control_id="F1",
                        received_at=time.time()).to_json()
    for value in (final, final, draft.to_json()):
        await score_one(deps, value)
    assert len(sent) == 1 and repo.count(ScoreRow) == 1 and repo.is_processed("XIHE|F1")
    assert await score_stored(deps) == 0  # scored: nothing for the sweep
    # drift: the first claim of a score counts it, a replay's does not
    assert repo.count_in_drift("XIHE", "A1", 0, []) and not repo.count_in_drift("XIHE", "A1", 0, [])
    assert [s.accession for s in repo.drift_window("XIHE", "chest", "", 0)] == ["A1"]
    # delivery: one claim at a time; a delivered draft is never claimed again
    claimed = repo.claim_delivery("XIHE", "A1", now=time.time(), lease=60)
    assert claimed is not None and repo.claim_delivery("XIHE", "A1", now=time.time(), lease=60) is None
    repo.finish_delivery(claimed.id, "AA", time.time(), 0.0)
    assert repo.claim_delivery("XIHE", "A1", now=time.time() + 3600, lease=60) is None and repo.undelivered(time.time()) == []
    # a signed pair with no score is found by the sweep's query
    repo.upsert(DraftRow(institution="XIHE", accession="A2", draft="d", body_system="chest", language="zh"))
    repo.upsert(SignedReportRow(institution="XIHE", accession="A2", status="C", impression="d", body_system="chest",
                                language="zh"))
    assert [d.accession for d in repo.unscored_pairs()] == ["A2"]
    # a later sweep reads only pairs with a half stored since its watermark, by either side's time
    now = time.time()
    repo.upsert(DraftRow(institution="XIHE", accession="A3", draft="d", body_system="chest", language="zh",
                         created_at=now - 86400))  # drafted yesterday, signed just now
    repo.upsert(SignedReportRow(institution="XIHE", accession="A3", status="F", impression="d", body_system="chest",
                                language="zh", received_at=now))
    repo.upsert(DraftRow(institution="XIHE", accession="A4", draft="d", body_system="chest", language="zh",
                         created_at=now - 7200))  # the whole pair before the watermark
    repo.upsert(SignedReportRow(institution="XIHE", accession="A4", status="F", impression="d", body_system="chest",
                                language="zh", received_at=now - 7000))
    assert [d.accession for d in repo.unscored_pairs(since=now - 3600)] == ["A3", "A2"]  # oldest draft first
    assert [d.accession for d in repo.unscored_pairs()] == ["A3", "A4", "A2"]
    assert [d.accession for d in repo.unscored_pairs(limit=1, since=now - 3600)] == ["A3"]
