"""Drafts reach the RIS worklist once, later if need be (issue #19): claimed in real SQLite, sent to
a real MLLP server on loopback, every send of a draft under the same MSH-10."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.outbound import draft_control_id
from kernel.codes import Delivery, DraftStatus
from storage.repository import Repository
from storage.tables import DraftRow, SignedReportRow
from streams.agents import worklist as worklist_agent
from streams.agents.worklist import WorklistDeps, deliver, deliver_one, sweep
from streams.records import DraftRecord
from streams.stats import new_stats
from streams.worklist import WorklistSender
from tests.conftest import free_port
from tests.fake_ris import control_ids, fake_ris


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    repository = Repository(f"sqlite:///{tmp_path / 'radflow.db'}")
    yield repository
    repository.close()


def store(repo: Repository, n: int) -> list[DraftRecord]:
    records = [DraftRecord(institution="XIHE", accession=f"A{i}", body_system="chest", language="zh",
                           findings="f", draft=f"右肺结节{i}。", model_id="m") for i in range(n)]
    for record in records:
        repo.upsert(record.to_row())
    return records


def deps_for(repo: Repository, port: int) -> WorklistDeps:
    return WorklistDeps(WorklistSender({"XIHE": ("127.0.0.1", port)}, retries=1, backoff=0.01), repo, new_stats())


async def test_a_draft_made_while_the_ris_is_down_is_sent_later_under_the_same_control_id(
        repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worklist_agent, "RETRY_FIRST", 0.0)  # due again at once
    [record] = store(repo, 1)
    port = free_port()
    deps = deps_for(repo, port)
    assert await deliver_one(deps, record.to_json()) == Delivery.FAILED  # nobody listens
    row = repo.get(DraftRow, "XIHE", "A0")
    assert row.delivery == "failed" and row.delivery_attempts == 1 and row.delivered_at is None
    async with fake_ris(("AE", "AA"), port=port) as ris:
        assert await sweep(deps) == 1  # the RIS answers AE: still due
        assert await sweep(deps) == 1  # then AA
        assert await sweep(deps) == 0 and await deliver_one(deps, record.to_json()) is None  # delivered: never again
    row = repo.get(DraftRow, "XIHE", "A0")
    assert row.delivery == "AA" and row.delivery_attempts == 3 and row.delivered_at is not None
    expected = draft_control_id("XIHE", "A0", row.draft, row.created_at)
    assert control_ids(ris.received) == [expected, expected] and len(expected) == 20


async def test_a_failed_draft_backs_off(repo: Repository) -> None:
    store(repo, 1)
    deps = deps_for(repo, free_port())
    assert await deliver(deps, "XIHE", "A0") == Delivery.FAILED
    assert await sweep(deps) == 0 and repo.undelivered(now=1e18) == [("XIHE", "A0")]  # due in 5 s, not now
    assert worklist_agent.retry_delay(1) == 5.0 and worklist_agent.retry_delay(20) == worklist_agent.RETRY_MAX


async def test_two_senders_never_send_one_draft_twice(repo: Repository) -> None:
    records = store(repo, 6)
    async with fake_ris() as ris:
        deps = deps_for(repo, ris.port)
        # the agent reading the drafts topic again, and the sweep, all at once
        outcomes = await asyncio.gather(*(deliver_one(deps, r.to_json()) for r in records + records), sweep(deps))
    assert sorted(control_ids(ris.received)) == sorted(
        draft_control_id(r.institution, r.accession, r.draft, r.created_at) for r in records)
    assert sum(o == "AA" for o in outcomes[:-1]) + outcomes[-1] == 6
    assert {repo.get(DraftRow, "XIHE", f"A{i}").delivery for i in range(6)} == {"AA"}


async def test_a_claim_whose_sender_died_lapses(repo: Repository) -> None:
    store(repo, 1)
    assert repo.claim_delivery("XIHE", "A0", now=100.0, lease=60.0) is not None  # then the sender is killed
    assert repo.claim_delivery("XIHE", "A0", now=150.0, lease=60.0) is None
    assert repo.undelivered(now=161.0) == [("XIHE", "A0")]
    async with fake_ris() as ris:
        assert await sweep(deps_for(repo, ris.port)) == 1
    assert repo.get(DraftRow, "XIHE", "A0").delivery == "AA" and len(ris.received) == 1


async def test_a_draft_signed_before_the_ris_took_it_is_still_delivered_once(
        repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    """The F is stored while the RIS is down: the draft is marked signed (storage.pending) but was
    never delivered, so the sweep still sends it; a retracted draft is never sent."""
    monkeypatch.setattr(worklist_agent, "RETRY_FIRST", 0.0)  # due again at once
    store(repo, 2)
    deps = deps_for(repo, free_port())
    assert await deliver(deps, "XIHE", "A0") == Delivery.FAILED  # nobody listens
    for accession in ("A0", "A1"):
        repo.upsert(SignedReportRow(institution="XIHE", accession=accession, status="F", impression="右肺结节。"))
    repo.retract("XIHE", "A1")
    assert repo.get(DraftRow, "XIHE", "A0").status == DraftStatus.SIGNED
    assert repo.undelivered(now=1e18) == [("XIHE", "A0")]
    async with fake_ris() as ris:
        deps = deps_for(repo, ris.port)
        assert await deliver(deps, "XIHE", "A1") is None  # retracted
        assert await sweep(deps) == 1 and await deliver(deps, "XIHE", "A0") is None
    assert len(ris.received) == 1 and repo.undelivered(now=1e18) == []
    assert repo.get(DraftRow, "XIHE", "A0").delivery == "AA" and repo.get(DraftRow, "XIHE", "A1").delivery == ""


async def test_drafts_of_an_institution_without_a_route_never_hide_the_routed_ones(repo: Repository) -> None:
    """A site with no route (web worklist only) piles up drafts that are never sent; oldest first
    in a sweep of 500, they used to fill every sweep, and a routed draft behind them waited forever."""
    from sqlalchemy import insert
    from sqlmodel import SQLModel

    with repo.engine.begin() as connection:  # 600 older drafts of NANHU, which has no route
        connection.execute(insert(SQLModel.metadata.tables["drafts"]), [
            {"institution": "NANHU", "accession": f"N{i}", "draft": "x", "created_at": float(i)} for i in range(600)])
    store(repo, 1)  # XIHE's, newer, never delivered (its message crossed a broker that died)
    async with fake_ris() as ris:
        deps = deps_for(repo, ris.port)
        assert await sweep(deps) == 0  # the 500 oldest: all NANHU's, now marked unrouted
        assert await sweep(deps) == 1  # the other 100, and XIHE's draft
        assert await sweep(deps) == 0 and repo.undelivered(now=1e18) == []
    assert len(ris.received) == 1 and repo.get(DraftRow, "XIHE", "A0").delivery == "AA"
    assert {repo.get(DraftRow, "NANHU", f"N{i}").delivery for i in (0, 599)} == {Delivery.UNROUTED}


def test_unrouted_marks_only_drafts_no_sender_holds(repo: Repository) -> None:
    states = {"N0": ("", 0.0), "N1": ("failed", 500.0), "N2": ("sending", 50.0), "N3": ("sending", 500.0),
              "N4": ("AA", 0.0)}  # sending until 500: a live claim at 100
    for accession, (delivery, due) in states.items():
        repo.upsert(DraftRow(institution="NANHU", accession=accession, draft="x", delivery=delivery, delivery_due=due))
    marked = {a for a in states if repo.mark_unrouted("NANHU", a, now=100.0)}
    assert marked == {"N0", "N1", "N2"}  # never sent, failed (backing off or not), a claim that lapsed
    assert repo.get(DraftRow, "NANHU", "N3").delivery == "sending" and repo.get(DraftRow, "NANHU", "N4").delivery == "AA"
