"""An AA is a promise (issue #19): `radflow serve` on the embedded broker, fed by eight RIS-like
senders, is stopped three times at unannounced moments: Ctrl-C, SIGKILL of every process at once
(listener, worker, broker), and SIGKILL of the broker alone. Serve is started again after the
first two; after the third, serve notices its broker died and starts its stack again by itself.

Senders re-send every message that got no acknowledgement, as a RIS does. At the end every
message acknowledged AA/CA is in storage exactly once (the signed report, a draft for every
preliminary report, a score for every pair, the correction last), nothing answered AE/AR is, the
journal is empty (all released), and the worklist (a fake RIS) got every draft once (one MSH-10
per draft; a repeat of a send whose ACK a crash cut off carries the same MSH-10).

The moments are drawn from a seeded generator (CHAOS_SEED, default 19): which acknowledgement
count triggers each action, and in which order the three actions come. CHAOS_JOURNAL=off runs the
same stream without the journal (the control: acknowledged messages are lost, and this test fails).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from ingest.hl7 import parse, segment
from ingest.journal import read_stats
from ingest.mllp import MLLPClient, ack_code
from radflow.demodata import generate_reports
from radflow.demodata.hl7 import to_hl7
from storage.repository import Repository
from storage.tables import DraftRow, ScoreRow, SignedReportRow
from tests.conftest import free_port
from tests.fake_ris import fake_ris
from tests.integration.test_stop import _cmdline, _descendants

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

SENDERS = 8
ACCEPTED = {"AA", "CA"}
PACE = 0.04  # seconds between two messages of one sender: the stream spans the three stops


@dataclass
class Sent:
    """One message of the feed and the last acknowledgement it got."""

    message: bytes
    kind: str  # P, F, C, ADT, bad
    exam: tuple[str, str] = ("", "")
    ack: str = ""


def _adt(institution: str, n: int) -> bytes:
    msh = {3: "HIS", 4: institution, 5: "RADFLOW", 6: "RADFLOW", 7: "20260105080000", 9: "ADT^A08^ADT_A01",
           10: f"ADT{n:06d}", 11: "P", 12: "2.5.1"}
    return ("\r".join([segment("MSH", msh), segment("PID", {1: "1", 3: f"SYN{n:07d}", 5: "DEMO^PATIENT"})]) + "\r").encode()


def _feed(rng: random.Random) -> list[list[Sent]]:
    """Per sender, in order: each exam's P, F and sometimes C on one sender (as a RIS keeps an
    order's messages in sequence), ADT between them, and a few frames that cannot be accepted."""
    reports = generate_reports(60, seed=19)  # 3 institutions x 5 body systems x 60 = 900 exams
    when = datetime(2026, 1, 5, 8, 0, 0)
    shares: list[list[Sent]] = [[] for _ in range(SENDERS)]
    for n, report in enumerate(reports):
        exam = (report.institution, report.accession)
        share = shares[n % SENDERS]
        share.append(Sent(to_hl7(report, "P", f"P{n:06d}", when), "P", exam))
        share.append(Sent(to_hl7(report, "F", f"F{n:06d}", when), "F", exam))
        if rng.random() < 0.12:
            share.append(Sent(to_hl7(report, "C", f"C{n:06d}", when), "C", exam))
        if rng.random() < 0.1:
            share.append(Sent(_adt(report.institution, n), "ADT"))
    for n in range(24):
        share = shares[n % SENDERS]
        bad = (b"this is not HL7 at all %d" % n if n % 2 else
               to_hl7(reports[n], "F", f"BAD{n:04d}", when).replace(b"|2.5.1", b"|3.0").replace(
                   reports[n].accession.encode(), b"BAD%04d" % n))
        share.insert(rng.randrange(len(share)), Sent(bad, "bad", ("", f"BAD{n:04d}")))
    return shares


@dataclass
class Serve:
    """`radflow serve` as a shell starts it, restarted by the test after a stop or a kill."""

    env: dict[str, str]
    out_dir: Path
    runs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.runs[-1]

    def output(self) -> str:
        return (self.out_dir / f"serve{len(self.runs) - 1}.out").read_text(errors="replace")

    def start(self) -> None:
        with (self.out_dir / f"serve{len(self.runs)}.out").open("wb") as out:
            self.runs.append(subprocess.Popen([sys.executable, "-m", "radflow", "serve"], env=self.env, stdout=out,
                                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                              start_new_session=True))

    def wait_ready(self, times: int = 1, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while self.output().count("Ctrl-C stops.") < times:
            assert self.process.poll() is None, f"serve exited:\n{self.output()[-3000:]}"
            assert time.monotonic() < deadline, f"serve not ready in {timeout:.0f} s:\n{self.output()[-3000:]}"
            time.sleep(0.2)

    def everyone(self) -> set[int]:
        return _descendants(self.process.pid) | {self.process.pid}

    def ctrl_c(self) -> None:
        os.killpg(self.process.pid, signal.SIGINT)  # as a terminal does: the foreground group
        self.process.wait(60)

    def kill_all(self) -> None:
        pids = self.everyone()
        for pid in pids:  # at once: nobody gets to clean up
            os.kill(pid, signal.SIGKILL)
        self.process.wait(10)
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in pids - {self.process.pid}):
            assert time.monotonic() < deadline
            time.sleep(0.1)

    def kill_broker(self) -> None:
        [broker] = [pid for pid in _descendants(self.process.pid) if "broker" in _cmdline(pid)
                    and "radflow" not in _cmdline(pid)]
        os.kill(broker, signal.SIGKILL)

    def stop_all(self) -> None:
        for run in self.runs:
            if run.poll() is None:
                for pid in _descendants(run.pid) | {run.pid}:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                run.wait()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"


async def _send_all(port: int, share: list[Sent], acks: list[int]) -> None:
    """One RIS connection: each message until it is answered, reconnecting as long as it takes."""
    client: MLLPClient | None = None
    for item in share:
        while not item.ack:
            try:
                if client is None:
                    client = await MLLPClient.connect("127.0.0.1", port, timeout=20)
                item.ack = ack_code(await client.send(item.message))
                acks[0] += 1
            except Exception:  # refused, reset, closed: no ACK, send again
                if client is not None:
                    await client.close()
                client = None
                await asyncio.sleep(0.3)
        await asyncio.sleep(PACE)
    if client is not None:
        await client.close()


async def test_nothing_acknowledged_is_lost_through_stops_and_crashes(tmp_path: Path, tiny_model: Path) -> None:
    rng = random.Random(int(os.environ.get("CHAOS_SEED", "19")))
    shares = _feed(rng)
    total = sum(len(s) for s in shares)
    assert total >= 2000
    home = tmp_path / "home"
    port = free_port()
    async with fake_ris() as ris:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RADFLOW_")}
        env.update(RADFLOW_HOME=str(home), RADFLOW_MODEL_PATH=str(tiny_model), RADFLOW_MLLP_PORT=str(port),
                   RADFLOW_DASHBOARD_PORT=str(free_port()), RADFLOW_EMBEDDED_BROKER_PORT=str(free_port()),
                   RADFLOW_PARTITIONS="2", RADFLOW_MAX_NEW_TOKENS="6", RADFLOW_DRAFT_BATCH="32",
                   RADFLOW_DRAFT_WITHIN="0.2", RADFLOW_STOP_GRACE="5", RADFLOW_WORKLIST_ROUTES=f"*=127.0.0.1:{ris.port}")
        if os.environ.get("CHAOS_JOURNAL") == "off":
            env["RADFLOW_JOURNAL_PATH"] = "off"
        serve = Serve(env, tmp_path)
        try:
            await _run(serve, shares, total, rng)
            await _check(serve, shares, home, ris.received)
        finally:
            serve.stop_all()


async def _run(serve: Serve, shares: list[list[Sent]], total: int, rng: random.Random) -> None:
    serve.start()
    await asyncio.to_thread(serve.wait_ready)
    acks = [0]
    started = time.monotonic()
    sending = asyncio.gather(*(_send_all(int(serve.env["RADFLOW_MLLP_PORT"]), share, acks) for share in shares))
    actions = ["ctrl-c", "kill-all", "kill-broker"]
    rng.shuffle(actions)
    for n, action in enumerate(actions):  # the n-th quarter of the stream, somewhere in it
        at = int(total * (n + rng.uniform(0.3, 0.9)) / 4)
        while acks[0] < at:
            await asyncio.sleep(0.05)
        journal = read_stats(Path(serve.env["RADFLOW_HOME"]) / "journal.sqlite")
        print(f"{time.monotonic() - started:5.1f} s: {action} after {acks[0]} acknowledgements; "
              f"{journal.pending if journal else '?'} of them not yet done downstream")
        if action == "ctrl-c":
            await asyncio.to_thread(serve.ctrl_c)
        elif action == "kill-all":
            await asyncio.to_thread(serve.kill_all)
        if action == "kill-broker":
            ready = serve.output().count("Ctrl-C stops.")
            serve.kill_broker()
            await asyncio.to_thread(serve.wait_ready, ready + 1)  # serve starts its stack again by itself
            assert "starting the stack again" in serve.output()
        else:
            serve.start()
            await asyncio.to_thread(serve.wait_ready)
    await sending
    print(f"{time.monotonic() - started:5.1f} s: all {total} messages answered")


async def _check(serve: Serve, shares: list[list[Sent]], home: Path, ris_received: list[bytes]) -> None:
    items = [item for share in shares for item in share]
    codes = Counter(item.ack for item in items)
    valid = [i for i in items if i.kind != "bad"]
    assert all(i.ack in ACCEPTED for i in valid), codes  # a journal with room: every valid message accepted
    assert all(i.ack not in ACCEPTED for i in items if i.kind == "bad"), codes
    drafted_exams = {i.exam for i in valid if i.kind == "P"}
    signed_exams = {i.exam for i in valid if i.kind in ("F", "C")}
    corrected = {i.exam for i in valid if i.kind == "C"}
    repo = Repository(f"sqlite:///{home / 'radflow.sqlite'}")

    def stored(model: type) -> set[tuple[str, str]]:
        from sqlmodel import Session, select

        with Session(repo.engine) as session:
            return {tuple(r) for r in session.exec(select(model.institution, model.accession)).all()}

    def delivered() -> Counter[str]:
        return Counter(parse(m).text(parse(m).segment("OBR"), 3, 1) for m in list(ris_received))

    deadline = time.monotonic() + 150
    while True:
        journal = read_stats(home / "journal.sqlite")
        done = ((journal is None or journal.pending == 0) and stored(DraftRow) >= drafted_exams
                and stored(SignedReportRow) >= signed_exams and stored(ScoreRow) >= drafted_exams & signed_exams
                and set(delivered()) >= {a for _, a in drafted_exams})
        if done or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    print(f"acknowledgements {dict(codes)}; journal {journal}; stored drafts {len(stored(DraftRow))}, signed "
          f"{len(stored(SignedReportRow))}, scores {len(stored(ScoreRow))} of {len(drafted_exams)} exams; "
          f"RIS got {len(ris_received)} drafts for {len(delivered())} exams")
    assert stored(SignedReportRow) == signed_exams  # exactly once: one row per exam, no more, no less
    assert stored(DraftRow) == drafted_exams
    assert stored(ScoreRow) == drafted_exams & signed_exams
    assert journal is not None and journal.pending == 0, serve.output()[-3000:]  # everything released
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{serve.env['RADFLOW_DASHBOARD_PORT']}/api/stats", timeout=5) as r:
        assert json.loads(r.read())["journal"]["pending"] == 0  # the worker shows the listener's journal
    with repo.engine.connect() as connection:  # the correction came last on its key, and stayed last
        from sqlalchemy import text

        statuses = dict(((r[0], r[1]), r[2]) for r in connection.execute(
            text("SELECT institution, accession, status FROM signed_reports")))
    assert {e for e in corrected if statuses[e] != "C"} == set()
    assert not any(a.startswith("BAD") for _, a in stored(SignedReportRow) | stored(DraftRow))  # AE/AR: nothing
    assert set(delivered()) == {a for _, a in drafted_exams}  # the worklist got every draft
    # ... each once: one draft, one MSH-10 per exam (a send whose ACK a crash cut off comes again
    # under the same MSH-10, which a RIS recognises; such repeats are counted, not forbidden)
    ids: dict[str, set[str]] = {}
    for message in list(ris_received):
        parsed = parse(message)
        ids.setdefault(parsed.text(parsed.segment("OBR"), 3, 1), set()).add(parsed.control_id)
    assert {a: c for a, c in ids.items() if len(c) > 1} == {}
    print(f"RIS: {len(ris_received)} messages, {len(ids)} drafts, "
          f"{len(ris_received) - len(ids)} repeats of a send whose ACK was cut off")
