"""Each agent on its own through Faust's ``agent.test_context()``: real SQLite storage, real records
in and out, a fake only for what an agent sends on (the real path is tests/integration)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faust
import pytest

from ingest.events import OrderEvent, ReportEvent
from kernel.codes import AdapterStatus, ResultStatus
from model.adapters import write_meta
from model.drafter import EchoDrafter
from storage.repository import Repository
from storage.tables import AdapterRow, AlertRow, DraftRow, OrderRow, ScoreRow, SignedReportRow
from streams.agents.adapters import AdapterDeps, swap
from streams.agents.draft import DraftDeps, draft_agent
from streams.agents.drift import DriftDeps, drift_agent
from streams.agents.orders import OrderDeps, order_agent
from streams.agents.score import ScoreDeps, score_agent
from streams.agents.worklist import WorklistDeps, worklist_agent
from streams.records import AlertRecord, DraftRecord, ScoreRecord
from streams.stats import new_stats
from streams.worklist import WorklistSender
from tests.fake_ris import fake_ris

FINDINGS = "右肺上叶见磨玻璃结节。左肺下叶炎症。"


class Sent:
    """What an agent sent on: (key, record) pairs."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []

    async def __call__(self, key: str, record: Any) -> None:
        self.items.append((key, record))


@pytest.fixture
async def app() -> AsyncIterator[faust.App]:
    # on the test's own loop (Faust would open one of its own); the broker is never contacted
    app = faust.App(f"test-agents-{time.monotonic_ns()}", broker="kafka://127.0.0.1:1", store="memory://",
                    autodiscover=False, loop=asyncio.get_running_loop())
    app.finalize()
    yield app
    consumer = app._consumer  # iterating a stream creates it, and its thread makes a loop it never ran
    if consumer is not None:
        consumer._thread.thread_loop.close()


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    repository = Repository(f"sqlite:///{tmp_path / 'radflow.db'}")
    yield repository
    repository.close()


def _report(status: str, accession: str = "A1", impression: str = "") -> bytes:
    return ReportEvent(institution="XIHE", accession=accession, status=status, exam="CT CHEST", exam_code="CTCH",
                       body_system="chest", modality="CT", findings=FINDINGS, impression=impression,
                       language="zh", received_at=time.time()).to_json()


def _draft(accession: str = "A1", text: str = "左肺下叶炎症。") -> DraftRecord:
    return DraftRecord(institution="XIHE", accession=accession, body_system="chest", language="zh",
                       findings=FINDINGS, draft=text, model_id="echo")


async def test_draft_agent_stores_then_sends_a_draft_record(app: faust.App, repo: Repository) -> None:
    sent, stats = Sent(), new_stats()
    with ThreadPoolExecutor(1) as model_thread:
        deps = DraftDeps(EchoDrafter(), repo, sent, model_thread, stats, batch=1, within=0.01)
        async with draft_agent(app, app.channel(), deps).test_context() as agent:
            event = await agent.put(_report(ResultStatus.PRELIMINARY))
            assert agent.results[event.message.offset] == 1
            event = await agent.put(_report(ResultStatus.FINAL, impression="左肺炎症。"))  # signed: nothing to draft
            assert agent.results[event.message.offset] == 0
    [(key, record)] = sent.items
    assert key == "XIHE|A1" and isinstance(record, DraftRecord) and record.draft == "左肺下叶炎症。"
    assert repo.get(DraftRow, "XIHE", "A1").draft == record.draft and stats["drafted"] == 1


async def test_score_agent_pairs_either_order_and_sends_a_score_record(app: faust.App, repo: Repository) -> None:
    sent, stats, pending = Sent(), new_stats(), {}
    deps = ScoreDeps(repo, pending, sent, stats)
    async with score_agent(app, app.channel(), deps).test_context() as agent:
        first = await agent.put(_draft().to_json())
        assert agent.results[first.message.offset] is None and "XIHE|A1" in pending
        second = await agent.put(_report(ResultStatus.FINAL, impression="左肺下叶炎症。"))
        score = agent.results[second.message.offset]
        assert repo.get(ScoreRow, "XIHE", "A1").rougeL == score.rougeL and stats["scored"] == 1
        cancelled = await agent.put(_report(ResultStatus.CANCELLED))
        assert agent.results[cancelled.message.offset] is None
    assert isinstance(score, ScoreRecord) and score.rougeL > 0.999 and score.signed_status == "F"
    assert sent.items == [("XIHE|chest|", score)]  # keyed by segment
    assert repo.get(ScoreRow, "XIHE", "A1") is None  # a cancelled exam is retracted
    assert repo.get(SignedReportRow, "XIHE", "A1").status == ResultStatus.CANCELLED and "XIHE|A1" not in pending


async def test_drift_agent_raises_an_alert_when_a_window_leaves_its_band(app: faust.App, repo: Repository) -> None:
    sent, states = Sent(), {}
    deps = DriftDeps(repo, states, sent, chunk=2, reference_chunks=2)

    def score(value: float, n: int) -> bytes:  # stored by the score agent before it is sent
        record = ScoreRecord(institution="XIHE", accession=f"A{n}", body_system="chest", language="zh", rouge1=value,
                             rouge2=value, rougeL=value, missed=0, over=0)
        repo.upsert(record.to_row())
        return record.to_json()

    async with drift_agent(app, app.channel(), deps).test_context() as agent:
        for n, value in enumerate([0.6, 0.62, 0.61, 0.6]):  # two reference windows
            event = await agent.put(score(value, n))
            assert agent.results[event.message.offset] == []
        await agent.put(score(0.1, 4))
        event = await agent.put(score(0.1, 5))
        alerts = agent.results[event.message.offset]
    assert {a.metric for a in alerts} >= {"rougeL"} and all(isinstance(a, AlertRecord) for a in alerts)
    assert [key for key, _ in sent.items] == ["XIHE|chest|"] * len(alerts)
    assert len(repo.drift_chunks("XIHE", "chest", "")) == 3 and len(repo.alerts()) == len(alerts)
    assert isinstance(repo.alerts()[0], AlertRow) and "XIHE|chest|" in states


async def test_order_agent_registers_the_order(app: faust.App, repo: Repository) -> None:
    order = OrderEvent(institution="XIHE", accession="A9", exam="CT CHEST", exam_code="CTCH", body_system="chest",
                       modality="CT", order_control="NW")
    async with order_agent(app, app.channel(), OrderDeps(repo)).test_context() as agent:
        await agent.put(order.to_json())
    assert repo.get(OrderRow, "XIHE", "A9").order_control == "NW"


async def test_worklist_agent_delivers_to_the_ris_and_stores_the_outcome(app: faust.App, repo: Repository) -> None:
    stats = new_stats()
    repo.upsert(_draft().to_row())
    async with fake_ris() as ris:
        sender = WorklistSender({"XIHE": ("127.0.0.1", ris.port)}, retries=1, backoff=0.01)
        async with worklist_agent(app, app.channel(), WorklistDeps(sender, repo, stats)).test_context() as agent:
            event = await agent.put(_draft().to_json())
            assert agent.results[event.message.offset] == "AA"
            event = await agent.put(DraftRecord(institution="NANHU", accession="B1", body_system="chest",
                                                language="zh", findings="", draft="x").to_json())
            assert agent.results[event.message.offset] is None  # no route for that institution
    assert len(ris.received) == 1 and b"XIHE" in ris.received[0]
    assert repo.get(DraftRow, "XIHE", "A1").delivery == "AA" and stats["worklist_delivered"] == 1


class _SwappingDrafter:
    def __init__(self) -> None:
        self.wanted: list[dict] = []

    def set_adapters(self, wanted: Any) -> list[str]:
        self.wanted.append(dict(wanted))
        return list(wanted)


async def test_adapter_swap_serves_the_champions_in_storage(repo: Repository, tmp_path: Path) -> None:
    # the adapters task is not an agent (it reads with no consumer group); its step is tested here
    adapter = tmp_path / "XIHE" / "v0001"
    adapter.mkdir(parents=True)
    write_meta(adapter, "XIHE", "v0001", "1")
    repo.save(AdapterRow(name="XIHE", version="v0001", path=str(adapter), status=AdapterStatus.CANDIDATE))
    repo.promote("XIHE", "v0001")
    drafter, stats = _SwappingDrafter(), new_stats()
    with ThreadPoolExecutor(1) as model_thread:
        changes = await swap(AdapterDeps(drafter, repo, model_thread, stats), "test")
    assert changes == ["XIHE"] and stats["adapter_swaps"] == 1 and drafter.wanted[0]["XIHE"].version == "v0001"


