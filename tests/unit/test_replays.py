"""Replays are harmless (issue #19): each agent handed the same message twice, on real SQLite,
writes one effect, calls the model once, sends on once, and records the message as done
(storage.processed). A correction (C) still re-scores; the same correction again does not."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ingest.events import OrderEvent, ReportEvent
from kernel.codes import ResultStatus
from model.drafter import DraftRequest, EchoDrafter
from storage.repository import Repository
from storage.tables import DraftRow, DriftChunkRow, OrderRow, ScoreRow, SignedReportRow
from streams.agents.draft import DraftDeps, draft_batch
from streams.agents.drift import DriftDeps, watch_one
from streams.agents.orders import OrderDeps, register_one
from streams.agents.score import ScoreDeps, score_one
from streams.records import DraftRecord, ScoreRecord
from streams.stats import new_stats

FINDINGS = "右肺上叶见磨玻璃结节。左肺下叶炎症。"


class Sent:
    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []

    async def __call__(self, key: str, record: Any) -> None:
        self.items.append((key, record))


class CountingDrafter(EchoDrafter):
    """EchoDrafter that counts the reports it was asked to draft."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def draft(self, requests: list[DraftRequest]) -> list[Any]:
        self.asked += [r.accession for r in requests]
        return super().draft(requests)


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    repository = Repository(f"sqlite:///{tmp_path / 'radflow.db'}")
    yield repository
    repository.close()


@pytest.fixture
async def model_thread() -> AsyncIterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(1) as pool:
        yield pool


def report(status: str, accession: str = "A1", impression: str = "", control: str = "", findings: str = FINDINGS) -> bytes:
    return ReportEvent(institution="XIHE", accession=accession, status=status, exam="CT CHEST", exam_code="CTCH",
                       body_system="chest", modality="CT", findings=findings, impression=impression, language="zh",
                       message_control_id=control, received_at=time.time()).to_json()


async def test_a_replayed_preliminary_is_drafted_and_sent_once(repo: Repository, model_thread: ThreadPoolExecutor) -> None:
    drafter, sent, stats = CountingDrafter(), Sent(), new_stats()
    deps = DraftDeps(drafter, repo, sent, model_thread, stats)
    p1, p2 = report("P", "A1", control="M1"), report("P", "A2", control="")  # A2: a sender without MSH-10
    assert await draft_batch(deps, [p1, p2]) == 2
    assert await draft_batch(deps, [p1, p2]) == 0  # the journal's replay, or a RIS re-send
    assert await draft_batch(deps, [report("P", "A1", control="M1b")]) == 0  # re-sent with a new MSH-10, same findings
    assert drafter.asked == ["A1", "A2"] and len(sent.items) == 2 and repo.count(DraftRow) == 2
    assert stats["replays_skipped"] == 3 and stats["drafted"] == 2
    assert repo.done(["XIHE|M1", "XIHE|M1b"]) == {"XIHE|M1", "XIHE|M1b"} and ("XIHE", "A2", "P") in repo.done_keys([("XIHE", "A2", "P")])
    # a revised preliminary (new findings) is a new draft
    assert await draft_batch(deps, [report("P", "A1", control="M2", findings="左肺下叶炎症较前吸收。")]) == 1
    assert drafter.asked == ["A1", "A2", "A1"] and repo.get(DraftRow, "XIHE", "A1").findings == "左肺下叶炎症较前吸收。"


async def test_preliminaries_with_nothing_to_draft_are_done_too(repo: Repository, model_thread: ThreadPoolExecutor) -> None:
    deps = DraftDeps(CountingDrafter(), repo, Sent(), model_thread, new_stats())
    older, newer = report("P", "A1", control="M1", findings="旧。"), report("P", "A1", control="M2")
    empty = report("P", "A3", control="M3", findings="")
    assert await draft_batch(deps, [older, newer, empty]) == 1  # the newest P of the exam wins
    assert repo.done(["XIHE|M1", "XIHE|M2", "XIHE|M3"]) == {"XIHE|M1", "XIHE|M2", "XIHE|M3"}


async def test_replayed_signed_reports_and_drafts_score_once_and_a_correction_rescores(repo: Repository) -> None:
    sent, stats, pending = Sent(), new_stats(), {}
    deps = ScoreDeps(repo, pending, sent, stats)
    draft = DraftRecord(institution="XIHE", accession="A1", body_system="chest", language="zh", findings=FINDINGS,
                        draft="左肺下叶炎症。", model_id="echo").to_json()
    final = report("F", impression="左肺下叶炎症。", control="F1")
    repo.upsert(DraftRecord.from_json(draft).to_row())
    assert await score_one(deps, draft) is None
    first = await score_one(deps, final)
    assert first is not None and repo.is_processed("XIHE|F1")
    assert await score_one(deps, final) is None  # replay of the F: already done
    assert await score_one(deps, draft) is None  # the drafts topic read again: same texts, no score
    pending.clear()  # a table recovered short: storage still knows the pair was scored
    assert await score_one(deps, draft) is None
    correction = report("C", impression="右肺上叶结节。", control="C1")
    rescored = await score_one(deps, correction)
    assert rescored is not None and rescored.rougeL < first.rougeL and rescored.signed_status == "C"
    assert await score_one(deps, correction) is None  # the same correction again
    assert [r for _, r in sent.items] == [first, rescored] and stats["scored"] == 2
    assert repo.count(ScoreRow) == 1 and repo.get(SignedReportRow, "XIHE", "A1").impression == "右肺上叶结节。"
    assert repo.get(ScoreRow, "XIHE", "A1").rougeL == rescored.rougeL


async def test_a_replayed_cancel_and_an_order_are_done_once(repo: Repository) -> None:
    deps = ScoreDeps(repo, {}, Sent(), new_stats())
    repo.upsert(DraftRow(institution="XIHE", accession="A1", draft="d"))
    await score_one(deps, report(ResultStatus.CANCELLED, control="X1"))
    assert repo.is_processed("XIHE|X1") and repo.get(DraftRow, "XIHE", "A1").status == "retracted"
    order = OrderEvent(institution="XIHE", accession="A9", exam="CT", exam_code="CT", body_system="chest",
                       modality="CT", order_control="NW", message_control_id="O1").to_json()
    for _ in range(2):
        await register_one(OrderDeps(repo), order)
    assert repo.count(OrderRow) == 1 and repo.is_processed("XIHE|O1")


async def test_a_replayed_score_enters_its_drift_window_once(repo: Repository) -> None:
    states: dict[str, Any] = {}
    deps = DriftDeps(repo, states, Sent(), chunk=3, reference_chunks=2)

    def score(n: int, value: float = 0.5) -> bytes:
        record = ScoreRecord(institution="XIHE", accession=f"A{n}", body_system="chest", language="zh",
                             rouge1=value, rouge2=value, rougeL=value, missed=0, over=0)
        repo.upsert(record.to_row())  # the score agent stores a score before it sends it
        return record.to_json()

    values = [score(n, 0.1 * n) for n in range(5)]
    for value in values[:2] + values[:2] + values[2:4]:  # A0 and A1 read twice (uncommitted offsets)
        await watch_one(deps, value)
    [chunk] = repo.drift_chunks("XIHE", "chest", "")
    assert chunk.n == 3 and chunk.rougeL == pytest.approx(0.1)  # A0, A1, A2: each once
    assert states["XIHE|chest|"]["count"] == 1  # A3 waits in the open window
    states.clear()  # the table lost: the open window comes back from storage
    await watch_one(deps, values[3])  # and a replay of A3 still counts nothing
    await watch_one(deps, values[4])
    assert states["XIHE|chest|"]["count"] == 2 and states["XIHE|chest|"]["sums"]["rougeL"] == pytest.approx(0.7)
    assert repo.count(DriftChunkRow) == 1


async def test_a_pair_whose_draft_record_was_lost_is_scored_from_storage(repo: Repository) -> None:
    """The broker lost the drafts topic after the P and the F were done: storage holds both halves."""
    from streams.agents.score import score_stored

    sent, pending = Sent(), {}
    deps = ScoreDeps(repo, pending, sent, new_stats())
    repo.upsert(DraftRow(institution="XIHE", accession="A1", draft="左肺下叶炎症。", body_system="chest", language="zh"))
    repo.upsert(DraftRow(institution="XIHE", accession="A2", draft="x", body_system="chest", language="zh"))  # not signed
    await score_one(deps, report("F", impression="左肺下叶炎症。", control="F1"))  # scored: the draft is in storage
    repo.retract("XIHE", "A1")
    assert await score_stored(deps) == 0  # retracted: nothing to score
    repo.upsert(DraftRow(institution="XIHE", accession="A3", draft="右肺结节。", body_system="chest", language="zh"))
    repo.upsert(SignedReportRow(institution="XIHE", accession="A3", status="F", impression="右肺结节。",
                                body_system="chest", language="zh"))
    assert await score_stored(deps) == 1 and await score_stored(deps) == 0
    assert repo.get(ScoreRow, "XIHE", "A3").rougeL == pytest.approx(1.0, abs=1e-6) and "XIHE|A3" not in pending


async def test_a_result_of_another_status_is_done_when_read(repo: Repository) -> None:
    deps = ScoreDeps(repo, {}, Sent(), new_stats())
    assert await score_one(deps, report("I", control="I1")) is None and repo.is_processed("XIHE|I1")
    assert await score_one(deps, report("P", control="P1")) is None and not repo.is_processed("XIHE|P1")  # the drafter's


async def test_a_draft_record_after_its_pair_was_scored_from_storage_scores_nothing(repo: Repository) -> None:
    """The usual order in a busy worker: the draft is stored before its record crosses the drafts
    topic, so the F pairs with it from storage; the record, read later, changes nothing (it used
    to score the pair again and count it twice in its drift window)."""
    sent, stats = Sent(), new_stats()
    deps = ScoreDeps(repo, {}, sent, stats)
    record = DraftRecord(institution="XIHE", accession="A1", body_system="chest", language="zh", findings=FINDINGS,
                         draft="左肺下叶炎症。", model_id="echo")
    repo.upsert(record.to_row())
    assert await score_one(deps, report("F", impression="左肺下叶炎症。", control="F1")) is not None
    assert await score_one(deps, record.to_json()) is None
    assert len(sent.items) == 1 and stats["scored"] == 1 and stats["pairs_unchanged"] == 1


async def test_a_preliminary_replayed_after_its_exam_was_signed_is_not_drafted_again(
        repo: Repository, model_thread: ThreadPoolExecutor) -> None:
    """The F arrived before the P's replay (a journal replay after a crash): the draft is marked
    signed (storage.pending), and the P without MSH-10 is still recognised by its findings."""
    drafter, sent = CountingDrafter(), Sent()
    deps = DraftDeps(drafter, repo, sent, model_thread, new_stats())
    p = report("P", "A1", control="")
    assert await draft_batch(deps, [p]) == 1
    await score_one(ScoreDeps(repo, {}, Sent(), new_stats()), report("F", impression="左肺下叶炎症。", control="F1"))
    assert repo.get(DraftRow, "XIHE", "A1").status == "signed"
    assert await draft_batch(deps, [p]) == 0
    assert drafter.asked == ["A1"] and len(sent.items) == 1 and repo.get(DraftRow, "XIHE", "A1").status == "signed"
    repo.retract("XIHE", "A1")  # a cancelled exam ordered again with the same findings is drafted again
    assert await draft_batch(deps, [p]) == 1 and drafter.asked == ["A1", "A1"]
