"""The journal on the acknowledgement path: real SQLite files in a temporary directory, the
in-memory sink for the broker (the real broker and crashes: tests/integration/test_chaos.py)."""

import asyncio
import dataclasses
import errno
import json
import sqlite3
import time
from pathlib import Path

import pytest

from ingest.events import ReportEvent
from ingest.forwarder import Forwarder
from ingest.journal import Entry, Journal, JournalError, read_stats
from ingest.listener import IngestTopics, Listener
from ingest.mllp import ack_code
from ingest.sink import ListSink
from tests import samples

TOPICS = IngestTopics("t.reports", "t.dlq")


def _entry(n: int, status: str = "F") -> Entry:
    return Entry(f"X|{n}", "t.reports", f"X|A{n % 3}", b'{"n": %d}' % n, b"raw", status, "X", f"A{n % 3}", 1.0)


async def test_append_commits_concurrent_messages_together_and_in_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite", 1 << 20).open()
    try:
        seqs = await asyncio.gather(*(journal.append(_entry(n)) for n in range(50)))
        assert seqs == sorted(seqs) and len(set(seqs)) == 50
        assert journal.commits < 50  # group commit: one fsync for the messages that arrived together
        stored = await journal.after(0)
        assert [e.message_id for e in stored] == [f"X|{n}" for n in range(50)]
    finally:
        journal.close()
    # durable: another connection (another process) sees all of it
    stats = read_stats(tmp_path / "j.sqlite")
    assert stats is not None and stats.pending == 50 and stats.bytes > 0


async def test_listener_answers_aa_only_once_the_journal_holds_the_message(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite", 1 << 20).open()
    try:
        listener = Listener(ListSink(fail=True), TOPICS, journal=journal)  # the broker is down: no matter
        assert ack_code(await listener.handle(samples.ORU_EN_NARRATIVE, "peer")) == "AA"
        [entry] = await journal.after(0)
        assert entry.raw == samples.ORU_EN_NARRATIVE and entry.topic == "t.reports"
        event = ReportEvent.from_dict(json.loads(entry.value))
        assert event.message_id == entry.message_id and entry.message_id.endswith("|" + event.message_control_id)
        assert ack_code(await listener.handle(b"MSH|not hl7 at all", "peer")) in ("AE", "AR")
        assert [e.topic for e in await journal.after(0)] == ["t.reports", "t.dlq"]  # the dead letter too
    finally:
        journal.close()


async def test_a_full_disk_answers_ae_and_ce_with_a_reason_never_aa(tmp_path: Path, monkeypatch, caplog) -> None:
    journal = Journal(tmp_path / "j.sqlite", 1 << 20).open()

    def no_space(conn: sqlite3.Connection, entries: list[Entry]) -> list[int]:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Journal, "_insert", staticmethod(no_space))
    try:
        listener = Listener(ListSink(), TOPICS, journal=journal)
        for message, code in ((samples.ORU_EN_NARRATIVE, "AE"), (samples.ORU_ZH_UTF8, "CE")):
            ack = await listener.handle(message, "peer")
            assert ack_code(ack) == code and b"disk full" in ack
        assert "No space left on device" in caplog.text and "Free disk space" in caplog.text
        assert all(r.levelname == "ERROR" for r in caplog.records if "answering AE" in r.message)
        assert listener.stats.accepted == 0 and listener.stats.errors == 2
        monkeypatch.undo()  # space again: the sender's retry is accepted
        assert ack_code(await listener.handle(samples.ORU_EN_NARRATIVE, "peer")) == "AA"
    finally:
        journal.close()


async def test_a_journal_over_its_bound_answers_ae_until_entries_are_released(tmp_path: Path, caplog) -> None:
    journal = Journal(tmp_path / "j.sqlite", 40_000).open()  # a real, tiny bound: ten pages or so
    try:
        listener = Listener(ListSink(), TOPICS, journal=journal)
        codes = []
        for n in range(200):
            message = samples.ORU_EN_NARRATIVE.replace(b"|P|2.5", b"|P|2.5").replace(b"MSG", f"M{n:04d}".encode(), 1)
            codes.append(ack_code(await listener.handle(message, "peer")))
        assert "AA" in codes and "AE" in codes and codes.index("AE") > codes.count("AA") - 1
        assert set(codes[codes.index("AE"):]) == {"AE"}  # once full, nothing more is promised
        assert "journal full" in caplog.text and "RADFLOW_JOURNAL_MAX_BYTES" in caplog.text
        await journal.release([e.seq for e in await journal.after(0, 1000)])
        retry = samples.ORU_EN_NARRATIVE.replace(b"MSG", b"AGAIN", 1)
        assert ack_code(await listener.handle(retry, "peer")) == "AA"
    finally:
        journal.close()


async def test_forwarder_produces_in_order_and_releases_only_what_storage_says_is_done(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    journal = Journal(path, 1 << 20).open()
    for n in range(10):
        await journal.append(_entry(n, status="" if n == 9 else "F"))
    done_ids: set[str] = {"X|0", "X|1"}
    sink = ListSink()
    forwarder = Forwarder(journal, sink, lambda cs: [c.seq for c in cs if c.message_id in done_ids], release_every=0.05)
    await forwarder.start()  # the start pass releases what was done already: never produced again
    try:
        for _ in range(100):
            if len(sink.records) == 7:
                break
            await asyncio.sleep(0.02)
        assert [json.loads(v)["n"] for _, _, v in sink.records] == list(range(2, 9)) + [9]
        done_ids.update({"X|2", "X|3"})
        await asyncio.sleep(0.2)
        assert [e.message_id for e in await journal.after(0)] == [f"X|{n}" for n in range(4, 9)]  # 9 needs nothing
    finally:
        await forwarder.stop()
        journal.close()
    # a restart: what is left is produced again, oldest first
    journal = Journal(path, 1 << 20).open()
    again = ListSink()
    forwarder = Forwarder(journal, again, lambda cs: [])
    await forwarder.start()
    try:
        for _ in range(100):
            if len(again.records) == 5:
                break
            await asyncio.sleep(0.02)
        assert [json.loads(v)["n"] for _, _, v in again.records] == [4, 5, 6, 7, 8]
    finally:
        await forwarder.stop()
        journal.close()


async def test_forwarder_keeps_entries_while_the_broker_is_down(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite", 1 << 20).open()
    sink = ListSink(fail=True)
    forwarder = Forwarder(journal, sink, None)
    await forwarder.start()
    try:
        await journal.append(_entry(1))
        await asyncio.sleep(0.2)
        assert forwarder.stats.produce_failures >= 1 and sink.records == []
        sink.fail = False
        for _ in range(150):
            if sink.records:
                break
            await asyncio.sleep(0.02)
        assert len(sink.records) == 1 and len(await journal.after(0)) == 1  # kept until done downstream
    finally:
        await forwarder.stop()
        journal.close()


def test_unopenable_journal_names_the_setting(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(JournalError, match="RADFLOW_JOURNAL_PATH"):
        Journal(tmp_path / "file" / "j.sqlite", 1 << 20).open()


def test_one_listener_per_journal_and_a_killed_one_leaves_no_lock(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    path = tmp_path / "j.sqlite"
    first = Journal(path, 1 << 20).open()
    with pytest.raises(JournalError, match="one listener per journal"):
        Journal(path, 1 << 20).open()
    first.close()
    Journal(path, 1 << 20).open().close()  # closed: free again
    # another process holds it: named by its pid; SIGKILLed, the system drops its lock
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from ingest.journal import Journal; "
        f"Journal(__import__('pathlib').Path({str(path)!r}), 1 << 20).open(); print('open', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(JournalError, match=f"in use by pid {holder.pid}"):
            Journal(path, 1 << 20).open()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        holder.stdout.close()
    Journal(path, 1 << 20).open().close()


def test_done_is_read_from_the_processed_log_in_storage(tmp_path: Path) -> None:
    """The contract with the agents (storage.processed): a recorded message id, or for a message
    without MSH-10 its (institution, accession, status) recorded at or after it was journaled."""
    from ingest.forwarder import done_in
    from ingest.journal import Candidate
    from storage.processed import processed
    from storage.repository import Repository

    repo = Repository(f"sqlite:///{tmp_path / 'r.sqlite'}")
    before = time.time() - 60
    candidates = [Candidate(1, "X|P1", "P", "X", "A1", before), Candidate(2, "X|F1", "F", "X", "A1", before),
                  Candidate(3, "", "F", "X", "A2", before), Candidate(4, "", "F", "X", "A3", time.time() + 60)]
    done = done_in(repo)
    assert done(candidates) == []
    repo.mark_processed([processed("X|P1", "X", "A1", "P", "draft"), processed("", "X", "A2", "F", "score"),
                         processed("", "X", "A3", "F", "score")])
    assert done(candidates) == [1, 3]  # A3 was processed before this entry of it arrived: not its turn yet
    repo.close()


async def test_radflow_journal_and_the_dashboard_show_size_pending_and_age(tmp_path: Path, capsys) -> None:
    import argparse

    from kernel.settings import Settings
    from radflow.cli.journal import cmd_journal
    from streams.dashboard import journal_figures
    from streams.pages import journal_line

    settings = Settings(home=tmp_path, journal_max_bytes=1 << 20)
    assert cmd_journal(settings, argparse.Namespace(json=False)) == 1  # none yet: says where it would be
    assert "no journal at" in capsys.readouterr().out
    journal = Journal(settings.resolved_journal_path, settings.journal_max_bytes).open()
    try:
        for n in range(3):
            await journal.append(dataclasses.replace(_entry(n), received_at=time.time() - 120))
        assert cmd_journal(settings, argparse.Namespace(json=True)) == 0  # read-only, beside the writer
        shown = json.loads(capsys.readouterr().out)
        assert shown["pending"] == 3 and shown["oldest_pending_age_s"] >= 119 and shown["bytes"] > 0
        assert cmd_journal(settings, argparse.Namespace(json=False)) == 0
        assert "pending   3 acknowledged messages" in capsys.readouterr().out
        figures = journal_figures(settings)
        assert figures is not None and figures["pending"] == 3
        assert "<b>3</b> acknowledged messages not yet done downstream" in journal_line(figures)
    finally:
        journal.close()
    off = Settings(home=tmp_path, journal_path="off")
    assert journal_figures(off) is None and "off" in journal_line(None)


async def test_an_orderly_stop_hands_the_broker_what_it_has_not_produced(tmp_path: Path) -> None:
    class SlowSink(ListSink):  # a broker round trip of 50 ms
        async def publish_many(self, records: list[tuple[str, str, bytes]]) -> None:
            await asyncio.sleep(0.05)
            await super().publish_many(records)

    journal = Journal(tmp_path / "j.sqlite", 1 << 20).open()
    sink = SlowSink()
    forwarder = Forwarder(journal, sink, None, batch=5)
    await forwarder.start()
    try:
        await asyncio.gather(*(journal.append(_entry(n)) for n in range(20)))
    finally:
        await forwarder.stop()  # at once, as `radflow ingest` does on SIGTERM after its last ACK
        journal.close()
    assert [json.loads(v)["n"] for _, _, v in sink.records] == list(range(20))


async def test_the_listener_metrics_show_the_journal(tmp_path: Path) -> None:
    from ingest.mllp import send_messages
    from ingest.service import start_ingest

    journal = Journal(tmp_path / "j.sqlite", 1 << 20).open()
    service = await start_ingest("127.0.0.1", 0, TOPICS, sink=ListSink(), journal=journal, done=lambda cs: [])
    try:
        [ack] = await send_messages("127.0.0.1", service.server.port, [samples.ORU_EN_NARRATIVE])
        assert ack_code(ack) == "AA"
        for _ in range(100):
            if 'radflow_ingest_forwarded_total{step="produced"} 1' in service.listener.metrics.render():
                break
            await asyncio.sleep(0.02)
        text = service.listener.metrics.render()
        assert 'radflow_ingest_forwarded_total{step="produced"} 1' in text
        assert 'radflow_ingest_journal{figure="pending"} 1' in text  # produced, not yet done downstream
    finally:
        await service.stop()  # closes the journal too
