"""Reading and replaying the dead-letter topic (`radflow dlq list|replay`).

Replay runs a letter's raw bytes through the listener pipeline again (after a fix or an
upgrade); what still fails is reported and not dead-lettered a second time. Replayed reports are
keyed by (institution, accession) downstream, so replaying twice stores nothing twice.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from ingest.events import DeadLetter
from ingest.listener import IngestTopics, Listener
from ingest.mllp import ack_code
from ingest.sink import EventSink


@dataclass(frozen=True)
class StoredLetter:
    partition: int
    offset: int
    letter: DeadLetter

    @property
    def position(self) -> str:
        return f"{self.partition}:{self.offset}"


async def read_dead_letters(bootstrap_servers: str, topic: str, idle: float = 2.0, limit: float = 60.0) -> list[StoredLetter]:
    """Every record on the topic, read until none arrives for ``idle`` seconds.

    (Waiting for idleness rather than the end offset: the embedded broker's ListOffsets lags.)
    """
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap_servers, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[StoredLetter] = []
    deadline = time.monotonic() + limit
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=int(idle * 1000))
            if not batch:
                break
            for tp, records in batch.items():
                out.extend(StoredLetter(tp.partition, r.offset, DeadLetter.from_json(r.value)) for r in records)
    finally:
        await consumer.stop()
    return sorted(out, key=lambda s: (s.letter.received_at, s.partition, s.offset))


async def replay_letters(letters: list[StoredLetter], sink: EventSink, topics: IngestTopics, listener: Listener | None = None
                         ) -> list[tuple[StoredLetter, str]]:
    """(letter, acknowledgement code) for each letter run through the pipeline again."""
    listener = listener or Listener(sink, topics, dead_letter_failures=False)
    results = []
    for stored in letters:
        response = await listener.handle(stored.letter.raw, f"replay:{stored.letter.peer}")
        results.append((stored, ack_code(response) if response else "--"))
        await asyncio.sleep(0)
    return results
