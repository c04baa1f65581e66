"""An archive imported before go-live, then more reports replayed as HL7 through `radflow serve`:
every draft is made by the system the gate chose for its segment, and the dashboard, the API and
the worklist message name it. Real parts: `radflow import`, `serve` and `replay` as subprocesses,
the embedded broker, SQLite on disk, MLLP on loopback, the tiny model."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from kernel.settings import Settings
from radflow.demodata import generate_reports, write_pairs
from storage.repository import Repository
from storage.tables import DraftRow, ScoreRow
from tests.conftest import free_port
from tests.integration.conftest import wait_until


def _radflow(args: list[str], env: dict[str, str], timeout: float) -> str:
    done = subprocess.run([sys.executable, "-m", "radflow", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`radflow serve` and the port its MLLP listener took."""
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "radflow", "serve"], env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        found = re.search(r"MLLP on [\d.]+:(\d+);", log.read_text(errors="replace"))
        if found:
            return process, int(found.group(1))
        time.sleep(0.5)
    process.kill()
    raise AssertionError("serve did not come up:\n" + log.read_text()[-3000:])


def test_replayed_reports_are_drafted_by_the_system_chosen_for_their_segment(settings: Settings,
                                                                           tmp_path: Path) -> None:
    pairs = write_pairs(generate_reports(30, seed=7), tmp_path / "archive.jsonl")
    watch_port = free_port()
    run = dataclasses.replace(settings, system_cold="consensus", system_min_cases=5, system_holdout=10,
                              ranker_min_reports=100, worklist_routes=f"*=127.0.0.1:{watch_port}")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RADFLOW_")}, **run.to_env()}
    imported = _radflow(["import", "--data", str(pairs), "--split", "train"], env, 300)
    assert re.search(r"imported \d+ new signed reports", imported), imported
    assert re.search(r"ranker: ranker/v0001 trained on \d+ signed reports", imported), imported
    repository = Repository(run.resolved_database_url)
    champions = repository.system_champions()
    assert len(champions) == 15 and set(champions.values()) <= {"consensus", "retrieval", "ranker/v0001"}, champions
    assert "ranker/v0001" in champions.values(), champions  # it wins 2 segments here: replayed drafts name it
    assert {e.challenger for e in repository.system_evals()} >= {"retrieval", "ranker/v0001"}  # the ranker was tried
    assert "already stored" in _radflow(["import", "--data", str(pairs), "--split", "train", "--no-choose"], env, 120)
    assert "imported 0 new" in _radflow(["import", "--data", str(pairs), "--split", "train", "--no-choose"], env, 120)

    serve, mllp_port = _serve(env, tmp_path / "serve.log")
    try:
        replayed = _radflow(["replay", "--data", str(pairs), "--split", "test", "--port", str(mllp_port),
                             "--watch-port", str(watch_port), "--connections", "3", "--delay", "90"], env, 400)
        test_split = int(re.search(r"replayed (\d+) exams", replayed).group(1))  # type: ignore[union-attr]
        assert f"{test_split} drafts back, 0 finals sent without their draft" in replayed, replayed
        wait_until(lambda: repository.count(ScoreRow) >= test_split, 120, "every replayed report scored")

        drafts = _rows(repository)
        assert len(drafts) == test_split
        wrong = [(d.institution, d.body_system, d.system) for d in drafts
                 if d.system != champions[(d.institution, d.body_system)]]
        assert not wrong, wrong
        named = re.search(r"drafting systems named by the drafts: (.*)", replayed).group(1)  # type: ignore[union-attr]
        assert {n.split()[0] for n in named.split(", ")} == {d.system for d in drafts}  # the worklist NTE

        url = f"http://127.0.0.1:{run.dashboard_port}"
        with urllib.request.urlopen(url + "/api/summary", timeout=10) as response:
            summary = json.loads(response.read())
        assert {(s["institution"], s["body_system"]): s["serving"] for s in summary["systems"]} == champions
        assert sum(row["n"] for row in summary["served"]) == test_split
        for row in summary["served"]:
            assert set(row["systems"]) <= set(row["serving"]) <= set(champions.values())
        with urllib.request.urlopen(url + "/", timeout=10) as response:
            page = response.read().decode()
        rows = re.findall(r"<tr class=segment><td><a [^>]*>([^<]+)</a></td><td>([^<]+)</td><td class=system>([^<]+)</td>",
                          page)
        assert rows and all(champions[(i, b)] == system for i, b, system in rows), rows
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(60)
        except subprocess.TimeoutExpired:
            serve.kill()


def _rows(repository: Repository) -> list[DraftRow]:
    from sqlmodel import Session, select

    with Session(repository.engine) as session:
        return list(session.exec(select(DraftRow)).all())
