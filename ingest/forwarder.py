"""From the journal to the broker: produce in order of arrival, release what is done downstream.

The forwarder starts at the journal's oldest entry on every start, so whatever an earlier run
acknowledged but did not finish is produced again (in arrival order, hence in order per key).
Before that, one release pass drops the entries that storage already shows done, so a restart
re-sends only what is really missing. "Done" is decided by the ``done`` callable from durable
state only (the storage database: storage.processed), never from the broker, whose embedded
engine forgets everything when it stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ingest.journal import Candidate, Journal
from ingest.sink import EventSink

log = logging.getLogger(__name__)

#: Entries -> the seqs of those done downstream (called on a worker thread).
DoneCheck = Callable[[Sequence[Candidate]], list[int]]


class ProcessedLog(Protocol):
    """What storage answers (storage.processed.ProcessedLog, part of the Repository)."""

    def done(self, message_ids: Iterable[str]) -> set[str]: ...
    def done_keys(self, keys: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], float]: ...


def done_in(log_: ProcessedLog) -> DoneCheck:
    """The contract of docs/architecture.md: an entry is done once the agent that owns its effect
    recorded its message id; one without MSH-10, once its (institution, accession, status) was
    processed at or after the entry was journaled."""

    def done(candidates: Sequence[Candidate]) -> list[int]:
        ids = log_.done(c.message_id for c in candidates if c.message_id)
        keyed = [c for c in candidates if not c.message_id]
        times = log_.done_keys((c.institution, c.accession, c.status) for c in keyed) if keyed else {}
        return [c.seq for c in candidates
                if c.message_id in ids or (not c.message_id and times.get((c.institution, c.accession, c.status),
                                                                            -1.0) >= c.received_at)]

    return done

RETRY_SECONDS = 1.0
CHECK_CHUNK = 2000


@dataclass
class ForwarderStats:
    produced: int = 0
    released: int = 0
    produce_failures: int = 0


class Forwarder:
    def __init__(self, journal: Journal, sink: EventSink, done: DoneCheck | None,
                 release_every: float = 1.0, batch: int = 500) -> None:
        self.journal, self.sink, self.done = journal, sink, done
        self.release_every = release_every
        self.batch = batch
        self.cursor = 0  # the last seq produced in this run
        self.stats = ForwarderStats()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """In the background: the listener takes frames while an earlier run's entries are checked."""
        self._tasks = [asyncio.ensure_future(self._forward()), asyncio.ensure_future(self._release_loop())]

    async def stop(self, drain: float = 5.0) -> None:
        """Hands the broker what is not produced yet (at most ``drain`` seconds, and not once a
        produce fails: the journal keeps it for the next start), then stops."""
        loop = asyncio.get_running_loop()
        deadline, failures = loop.time() + drain, self.stats.produce_failures
        last = await self.journal.last_seq()
        while (self.cursor < last and loop.time() < deadline and self.stats.produce_failures == failures
               and self._tasks and not self._tasks[0].done()):
            await asyncio.sleep(0.02)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _next(self) -> list:
        """The next entries to produce, waiting for a commit when there are none."""
        while True:
            entries = await self.journal.after(self.cursor, self.batch, raw=False)
            if entries:
                return entries
            self.journal.appended.clear()
            entries = await self.journal.after(self.cursor, self.batch, raw=False)  # committed before the clear
            if entries:
                return entries
            try:
                await asyncio.wait_for(self.journal.appended.wait(), 1.0)
            except TimeoutError:
                pass

    async def _forward(self) -> None:
        try:
            await self.release_done(everything=True)  # what an earlier run finished needs no second send
        except Exception as exc:  # the database is away: send everything; replays are harmless
            log.warning("could not check which journal entries are done (%s)", type(exc).__name__)
        while True:
            entries = await self._next()
            try:
                await self.sink.publish_many([(e.topic, e.key, e.value) for e in entries])
            except Exception as exc:  # the broker is away: keep the entries, try again from the same place
                self.stats.produce_failures += 1
                log.warning("producing %d journal entries failed (%s); retrying in %.0f s",
                            len(entries), type(exc).__name__, RETRY_SECONDS)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            self.cursor = entries[-1].seq
            self.stats.produced += len(entries)
            finished = [e.seq for e in entries if not e.status]  # dead letters: nothing downstream to wait for
            await self.journal.release(finished)
            self.stats.released += len(finished)

    async def _release_loop(self) -> None:
        while True:
            await asyncio.sleep(self.release_every)
            try:
                await self.release_done()
            except Exception as exc:  # the database is away: entries stay, checked again next time
                log.warning("could not check which journal entries are done (%s)", type(exc).__name__)

    async def release_done(self, everything: bool = False) -> int:
        """Release the entries storage shows done: those produced in this run, or all of them."""
        if self.done is None:
            return 0
        released, after = 0, 0
        upto = None if everything else self.cursor
        while True:
            candidates = await self.journal.candidates(after, upto, CHECK_CHUNK)
            if not candidates:
                break
            done = await asyncio.to_thread(self.done, candidates)
            await self.journal.release(done)
            released += len(done)
            after = candidates[-1].seq
            if not everything and len(done) < len(candidates) // 2:
                break  # the rest is newer still; the next pass looks again
        self.stats.released += released
        return released
