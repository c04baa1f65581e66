"""`radflow ingest` as a process, against the embedded broker: the public corpus, the dead-letter
commands."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ingest.events import DeadLetter
from ingest.listener import Listener
from ingest.mllp import START_BLOCK, ack_code, frame, read_frame
from ingest.sink import ListSink
from streams.topics import TopicNames
from tests import samples
from tests.conftest import free_port

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "hl7"
ACK_CODES = {"AA", "AE", "AR", "CA", "CE", "CR"}


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix not in (".md", ".json"))


def _start_ingest(broker, prefix: str, tmp_path: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADFLOW_")}
    env.update(RADFLOW_BROKER=f"kafka://{broker.bootstrap_servers}", RADFLOW_TOPIC_PREFIX=prefix,
               RADFLOW_PARTITIONS="2", RADFLOW_HOME=str(tmp_path), RADFLOW_MLLP_IDLE_TIMEOUT="3")
    log_path = tmp_path / "ingest.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "radflow", "ingest", "--port", str(port)], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while b"MLLP listener on" not in log_path.read_bytes():
        assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.1)
    return proc, port, log_path


async def _count(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    n = 0
    try:
        while batch := await consumer.getmany(timeout_ms=3000):
            n += sum(len(r) for r in batch.values())
    finally:
        await consumer.stop()
    return n


async def _exchange(port: int, payload: bytes) -> list[bytes]:
    """Send bytes as they are, half-close, and collect every framed answer until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 21)
    writer.write(payload)
    await writer.drain()
    writer.write_eof()
    answers = []
    try:
        while (answer := await asyncio.wait_for(read_frame(reader), 15)) is not None:
            answers.append(answer)
    except Exception:  # the server closed a connection that was not valid MLLP
        pass
    writer.close()
    return answers


def _complete_frames(raw: bytes) -> list[bytes]:
    frames, rest = [], raw
    while (start := rest.find(START_BLOCK)) >= 0 and (end := rest.find(b"\x1c\x0d", start)) >= 0:
        frames.append(rest[start + 1 : end])
        rest = rest[end + 2 :]
    return frames


@pytest.mark.corpus
@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpora/hl7 is absent")
async def test_ingest_survives_the_public_corpus(broker, tmp_path: Path) -> None:
    prefix = f"c{uuid.uuid4().hex[:8]}"
    names = TopicNames(prefix)
    proc, port, log_path = _start_ingest(broker, prefix, tmp_path)
    reference = Listener(ListSink(), names.ingest())  # the same pipeline in memory, as the expectation
    outcomes: Counter[str] = Counter()
    try:
        for path in corpus_files():
            raw = path.read_bytes()
            if raw.startswith(START_BLOCK):  # already MLLP-framed upstream (some truncated on purpose)
                answers = await _exchange(port, raw)
                complete = _complete_frames(raw)
                for content in complete:
                    await reference.handle(content, "reference")
                assert len(answers) == len(complete), path.name
                assert all(ack_code(answer) in ACK_CODES for answer in answers), path.name
                outcomes["framed"] += 1
                continue
            expected = await reference.handle(raw, "reference")
            answers = await _exchange(port, frame(raw))
            assert proc.poll() is None, f"ingest died on {path.name}"
            if expected == b"":  # enhanced mode where the sender asked for no acknowledgement
                assert answers == [], path.name
                continue
            assert len(answers) == 1, path.name
            if answers[0].startswith(b"BHS"):  # a batch: one ACK per message inside
                codes = [seg[4:6].decode() for seg in answers[0].split(b"\r") if seg.startswith(b"MSA")]
                assert set(codes) <= ACK_CODES, path.name
            else:
                assert ack_code(answers[0]) == ack_code(expected), path.name
            outcomes[ack_code(answers[0]) if not answers[0].startswith(b"BHS") else "batch"] += 1
    finally:
        proc.terminate()
        proc.wait(10)
    by_topic = Counter(topic for topic, _, _ in reference.sink.records)  # type: ignore[attr-defined]
    # every message was produced, dead-lettered or deliberately ignored: nothing vanished
    # (test suites reuse MSH-4 + MSH-10, so duplicate suppression collapses some on purpose)
    assert await _count(broker.bootstrap_servers, names.reports) == by_topic[names.reports] >= 30
    assert await _count(broker.bootstrap_servers, names.orders) == by_topic[names.orders] >= 30
    assert await _count(broker.bootstrap_servers, names.dead_letter) == by_topic[names.dead_letter] >= 250
    assert outcomes["AA"] > 300 and outcomes["AE"] > 100 and outcomes["AR"] > 50 and outcomes["batch"] > 10
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log
    assert "connection closed inside a frame" in log  # the truncated MLLP sample was closed with a reason


async def test_dead_letters_list_and_replay(broker, tmp_path: Path) -> None:
    prefix = f"d{uuid.uuid4().hex[:8]}"
    names = TopicNames(prefix)
    proc, port, _ = _start_ingest(broker, prefix, tmp_path)
    try:
        [ack] = await _exchange(port, frame(samples.NOT_HL7))
        assert ack_code(ack) == "AE"
    finally:
        proc.terminate()
        proc.wait(10)
    # a report an older version could not read, dead-lettered before an upgrade
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    await producer.start()
    letter = DeadLetter(samples.ORU_EN_NARRATIVE, "HL7ParseError: (older version)", "10.0.0.9:4000", time.time())
    await producer.send_and_wait(names.dead_letter, letter.to_json(), key=b"10.0.0.9:4000")
    await producer.stop()

    env = {k: v for k, v in os.environ.items() if not k.startswith("RADFLOW_")}
    env.update(RADFLOW_BROKER=f"kafka://{broker.bootstrap_servers}", RADFLOW_TOPIC_PREFIX=prefix,
               RADFLOW_HOME=str(tmp_path))
    listed = subprocess.run([sys.executable, "-m", "radflow", "dlq", "list"], env=env, capture_output=True, text=True,
                            check=True)
    assert "2 dead letters" in listed.stdout and "HL7ParseError" in listed.stdout
    assert "GET /" not in listed.stdout  # content never printed
    replayed = subprocess.run([sys.executable, "-m", "radflow", "dlq", "replay", "--all"], env=env,
                              capture_output=True, text=True, check=False)
    assert "1 of 2 replayed letters are now stored" in replayed.stdout, replayed.stdout + replayed.stderr
    assert replayed.returncode == 1  # the unreadable one still fails, and says so
    assert await _count(broker.bootstrap_servers, names.reports) == 1
    assert await _count(broker.bootstrap_servers, names.dead_letter) == 2  # replay adds no new letters


async def test_no_patient_data_in_logs_or_dead_letter_listing(broker, tmp_path: Path) -> None:
    """Canary values in patient and report fields never reach the INFO log or `dlq list`."""
    prefix = f"k{uuid.uuid4().hex[:8]}"
    proc, port, log_path = _start_ingest(broker, prefix, tmp_path)
    canaries = ["CANARYSURNAME", "CANARY-MRN-771", "CANARYFINDING", "CANARYIMPRESSION"]
    good = (b"MSH|^~\\&|RIS|XIHE|RADFLOW|RADFLOW|20260105||ORU^R01|C1|P|2.5\r"
            b"PID|1||CANARY-MRN-771^^^XIHE||CANARYSURNAME^JANE\r"
            b"OBR|1||ACC9|CT0101^CT CHEST^L|||20260105|||||||||||||||||F\r"
            b"OBX|1|TX|18782-3||CANARYFINDING in the right lung.||||||F\r"
            b"OBX|2|TX|19005-8||CANARYIMPRESSION.||||||F\r")
    broken = good.replace(b"OBX|2", b"O\x00X|2")  # unreadable: dead-lettered with its bytes
    try:
        for message in (good, broken):
            [ack] = await _exchange(port, frame(message))
            assert ack_code(ack) in ("AA", "AE")
    finally:
        proc.terminate()
        proc.wait(10)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADFLOW_")}
    env.update(RADFLOW_BROKER=f"kafka://{broker.bootstrap_servers}", RADFLOW_TOPIC_PREFIX=prefix,
               RADFLOW_HOME=str(tmp_path))
    listed = subprocess.run([sys.executable, "-m", "radflow", "dlq", "list"], env=env, capture_output=True,
                            text=True, check=True).stdout
    assert "1 dead letters" in listed
    for text in (log_path.read_text(errors="replace"), listed):
        for canary in canaries:
            assert canary not in text


async def test_a_listener_that_cannot_bind_stops_cleanly_and_frees_its_journal(settings, tmp_path: Path) -> None:
    """The MLLP port is taken: the start fails with the system's error, the producer and the
    forwarder it had started are stopped, and the journal's lock is free for the next start."""
    import dataclasses
    import socket

    from ingest.journal import Journal
    from radflow.services import ensure_all_topics, start_listener

    await ensure_all_topics(settings)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = dataclasses.replace(settings, mllp_host="127.0.0.1", mllp_port=taken.getsockname()[1])
        with pytest.raises(OSError):
            await start_listener(busy)
    Journal(settings.resolved_journal_path, settings.journal_max_bytes).open().close()  # the lock went with it
    service = await start_listener(settings)  # and the next start takes it
    await service.stop()
