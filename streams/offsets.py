"""At-least-once offsets on Faust: the one place that touches Faust's and aiokafka's private state.

Why it exists (issue #8, and the SIGKILL test in tests/integration/test_reliability.py): Faust
can commit an offset that was never processed, or stop committing for good, in three ways:

1. **Commit past an in-flight message** (faust-streaming issue #606). ``Consumer._new_offset``
   lets one missing offset at the head pass as a compacted record, so it commits past a message
   a stream is still processing (the worklist agent sends four at a time): a SIGKILL loses it.
   The fix, faust-streaming PR #707, is open and in no release (0.15.3 is the newest, checked
   when this was written), and Faust has no public hook for the commit offset: hence the patch
   of ``_new_offset`` in ``install``. Delete it once a release with #707 is the lower bound.
2. **False gaps.** A record fetched before a seek and delivered after it makes Faust record the
   offsets in between as a gap, which it then counts as acked. radflow's topics are never
   compacted nor transactional, so gaps are refused (``RefusedGaps``).
3. **Dropped offsets and duplicate acks** after a rebalance: a hole at the head that no stream
   holds stops the commit forever, and every offset acked twice makes it crawl. The timer
   (``check``) drops stale acks and reads holes again from the committed offset, the way Faust
   itself does after a rebalance. No public API does either.

The attributes used differ between Faust releases, so the guard refuses to start outside the
range it was verified on (``VERIFIED`` in streams/faust_version.py; pyproject pins the same range).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any, NamedTuple

from faust.types.tuples import ack_lock
from intervaltree import IntervalTree

from streams.faust_version import check_faust_version
from streams.stats import Stats, new_stats

log = logging.getLogger(__name__)

# A dropped offset is neither acked nor held by any stream, which no healthy state shows for
# long. Right after a seek the head shows it too, until its record is delivered: well under a
# second, unless a full stream buffer holds the fetch loop back, hence the longer patience.
HOLE_CHECK_SECONDS = 2.0
HOLE_PATIENCE_SECONDS = 5.0
SEEK_PATIENCE_SECONDS = 60.0


class Hole(NamedTuple):
    start: int  # the committed offset (the head), missing
    end: int  # the next offset accounted for (acked, held, or one past the last read)
    at_seek: bool  # nothing read past the head since a seek: the head may just be on its way


class RefusedGaps(IntervalTree):
    """Faust's record of offsets that do not exist in a partition, kept empty on purpose (2.).

    A real gap (should a topic ever be compacted) would read as a hole instead, and be re-read on
    every check: loud, never silent."""

    guard: OffsetGuard | None = None

    def add(self, interval: Any) -> None:  # addi() and every other way in come through here
        if self.guard is not None:
            self.guard.refused += 1


class _GapRecords(defaultdict):
    def __init__(self, guard: OffsetGuard) -> None:
        super().__init__()
        self.guard = guard

    def __missing__(self, tp: Any) -> RefusedGaps:
        tree = self[tp] = RefusedGaps()
        tree.guard = self.guard
        return tree


class OffsetGuard:
    """Owns the worker's offset healing: its constants, its state, and Faust's internals."""

    def __init__(self, app: Any, stats: Stats | None = None, *, faust_version: str | None = None) -> None:
        check_faust_version(faust_version)
        self.app = app
        self.stats = stats if stats is not None else new_stats()
        self.refused = 0  # gaps refused
        self.log_starts: dict[Any, int] = {}  # where each assigned partition's log begins
        self.suspects: dict[Any, tuple[int, float]] = {}  # partition -> (hole start, first seen)

    @property
    def consumer(self) -> Any:
        return self.app.consumer

    # -- wiring -------------------------------------------------------------------------------
    def attach(self) -> None:
        """Guard from the first assignment on, and check for holes every HOLE_CHECK_SECONDS."""

        @self.app.on_partitions_assigned.connect  # type: ignore[untyped-decorator]  # mode's stubs reject async receivers
        async def guard_assignment(sender: Any, *args: Any, **kwargs: Any) -> None:
            self.install()  # before any record of the new assignment arrives (args: the assignment)
            try:
                await self.note_log_starts(args[0])
            except Exception as exc:  # never fail a rebalance over it; heads then come from commits only
                log.warning("log start offsets unavailable (%s)", type(exc).__name__)

        self.app.timer(interval=HOLE_CHECK_SECONDS)(self.check)

    def install(self) -> None:
        """Make the consumer's commits at-least-once for radflow's topics; idempotent (1. and 2.).

        A partition commits only once its head, the committed offset itself, is acked. Before the
        first commit the head is where the log starts; failing that, the offsets still held by a
        stream cap the commit."""
        consumer = self.consumer
        if not isinstance(consumer._gap, _GapRecords):
            consumer._gap = _GapRecords(self)
        if getattr(consumer, "_radflow_guarded", False):
            return
        faust_new_offset = consumer._new_offset

        def new_offset(tp: Any) -> int | None:
            acked = consumer._acked.get(tp)
            if acked:
                head = self.head(tp)
                if head is not None and min(acked) > head:
                    return None  # the head is missing: in flight, or dropped (lost() finds it)
                held = self.in_flight().get(tp) if head is None else None
                if held and min(held) < min(acked):
                    return None  # no head known: at least never pass what a stream still holds
            return faust_new_offset(tp)

        consumer._new_offset = new_offset  # the instance's, ahead of the class's method
        consumer._radflow_guarded = True

    async def note_log_starts(self, assigned: Any) -> None:
        """Remember where each assigned partition of radflow's topics begins, so that a partition
        with no commit yet still has a head to guard and to heal."""
        tps = [tp for tp in assigned if self.app.topics.acks_enabled_for(tp.topic)]
        starts = await self.consumer.earliest_offsets(*tps) if tps else {}
        self.log_starts = {tp: offset for tp, offset in starts.items() if offset is not None}

    # -- reading Faust's state ----------------------------------------------------------------
    def head(self, tp: Any) -> int | None:
        """The next offset a partition must process: its committed offset, or where its log starts
        when nothing is committed yet (Faust reads a committed 0 as none)."""
        committed = self.consumer._committed_offset.get(tp)
        return self.log_starts.get(tp) if committed is None else int(committed)

    def in_flight(self) -> dict[Any, set[int]]:
        """Offsets taken by a stream and not yet acked, per partition."""
        out: dict[Any, set[int]] = {}
        for message in list(self.consumer._unacked_messages):
            if not message.acked:
                out.setdefault(message.tp, set()).add(message.offset)
        return out

    def held(self) -> dict[Any, set[int]]:
        """In flight, or waiting in a channel's queue (Faust tracks a message only once a stream
        takes it from the queue)."""
        held = self.in_flight()
        for channel in list(getattr(self.app.topics, "_topics", ())):
            queue = getattr(getattr(channel, "_queue", None), "_queue", ())  # the channel's asyncio.Queue's deque
            for event in list(queue):
                message = getattr(event, "message", None)
                if message is not None:
                    held.setdefault(message.tp, set()).add(message.offset)
        return held

    def lost(self) -> dict[Any, Hole]:
        """Partitions whose next offset to commit was read but is neither acked, nor held by a
        stream, nor known not to exist: Faust dropped it, and the commit can never pass it (3.).

        Seen after a restart: once the tables are recovered, Faust seeks the stream partitions to
        their committed offsets while its fetch loop keeps delivering, and a record fetched before
        the seek moves the read offset past the records fetched after it, which are then dropped."""
        consumer, held, out = self.consumer, self.held(), {}
        for tp in set(consumer._read_offset) | set(consumer._acked):
            committed, read = self.head(tp), consumer._read_offset.get(tp)
            if read is None:  # a seek to 0 leaves no read offset: what was acked shows the reading
                read = max(consumer._acked.get(tp) or (), default=None)
            if committed is None or read is None or read < committed:
                continue  # no known head, or nothing read past it
            at_seek = read == committed  # a seek sets the read offset to the head
            if at_seek and not (consumer.highwater(tp) or 0) > committed:
                continue  # and nothing to read there yet
            acked, gaps, holding = consumer._acked.get(tp, ()), consumer._gap.get(tp), held.get(tp, set())
            if committed in holding or committed in acked or (gaps and gaps.overlaps(committed)):
                continue
            later = [o for o in acked if o > committed] + [o for o in holding if o > committed]
            if gaps:
                later += [i.begin for i in gaps if i.begin > committed]
            out[tp] = Hole(committed, min(later, default=read + 1), at_seek)
        return out

    def lag(self) -> list[tuple[dict[str, str], float]]:
        """Lag per assigned partition (the fetch highwater minus the committed offset), for /metrics."""
        consumer, out = self.consumer, []
        for tp in sorted(consumer.assignment()):
            highwater, committed = consumer.highwater(tp), consumer._committed_offset.get(tp)
            if highwater is None or highwater < 0:
                continue
            lag = highwater - (committed if committed is not None else 0)
            out.append(({"topic": tp.topic, "partition": str(tp.partition)}, float(max(0, lag))))
        return out

    def state(self) -> list[dict[str, Any]]:
        """Per assigned partition, for /api/debug/tasks (positions only, no data)."""
        consumer, paused = self.consumer, set()
        try:
            paused = set(consumer._thread._consumer.paused())  # aiokafka's view
        except Exception:  # another transport, or not started yet
            pass
        in_flight, out = self.in_flight(), []
        for tp in sorted(consumer.assignment()):
            acked, unacked, gaps = sorted(consumer._acked.get(tp, ())), sorted(in_flight.get(tp, ())), consumer._gap.get(tp)
            out.append({
                "topic": tp.topic, "partition": tp.partition, "committed": consumer._committed_offset.get(tp),
                "read": consumer._read_offset.get(tp), "highwater": consumer.highwater(tp),
                "acked_waiting": len(acked), "acked_first": acked[:3],
                "in_flight": len(unacked), "in_flight_first": unacked[:3],
                "gaps": [[i.begin, i.end] for i in sorted(gaps)][:5] if gaps else [], "paused": tp in paused,
            })
        return out

    # -- healing ------------------------------------------------------------------------------
    def tidy_acked(self) -> int:
        """Drop acked offsets below the committed one and duplicates; returns how many went.

        Faust turns its list of acked offsets into a commit by taking the first run of consecutive
        numbers. A duplicate ends that run, so with every offset acked twice (a false gap, then the
        same offsets read again; seen once in 17 SIGKILL runs) the commit crawls one offset per
        commit interval, and hours of work look stuck."""
        consumer, removed = self.consumer, 0
        with ack_lock:  # the lock Faust's own ack() holds
            for tp, acked in list(consumer._acked.items()):
                committed = consumer._committed_offset.get(tp)
                keep = sorted({o for o in acked if committed is None or o >= committed})
                if len(keep) != len(acked):
                    removed += len(acked) - len(keep)
                    acked[:] = keep
                    consumer._acked_index[tp] = set(keep)
        return removed

    async def reread_from_committed(self, settle: float = 0.2) -> bool:
        """Read every assigned partition again from its committed offset, as Faust does after a
        rebalance: stop the flow, let the fetch loop give up the batch it was delivering, seek all
        partitions (those never committed to their log start), resume. All of them, because
        stopping the flow cuts that batch short on every partition. Seeking one partition under a
        running fetch is worse: a record fetched before the seek lands after it and moves the
        read offset past the re-read. Returns False when Faust is rebalancing (it seeks itself)."""
        app, consumer = self.app, self.consumer
        if app.rebalancing or not consumer.flow_active:
            return False
        consumer.stop_flow()
        try:
            await asyncio.sleep(settle)  # the delivery under way sees the stop and gives up its record
            await consumer.wait_for_stopped_flow()
            if app.rebalancing:
                return False
            await consumer.perform_seek()
            for tp in consumer.assignment():
                head = self.head(tp)
                if consumer._committed_offset.get(tp) is None and head is not None:
                    # aiokafka seeks only to a committed offset above 0: take it back to its log start
                    await consumer.seek(tp, head)
                gaps = consumer._gap.get(tp)
                if gaps:  # re-reading finds real gaps again; false ones must not count as acked
                    gaps.clear()
            return True
        finally:
            if not app.rebalancing:
                consumer.resume_flow()

    async def check(self) -> None:
        """The timer: tidy acks, then read again a hole whose head stays put for
        HOLE_PATIENCE_SECONDS (SEEK_PATIENCE_SECONDS right after a seek). Everything uncommitted
        is processed again (every write is keyed, so a re-read never duplicates): sooner is cheaper."""
        self.install()
        self.stats["acks_tidied"] += self.tidy_acked()
        self.stats["gaps_refused"] = self.refused
        now, found = time.monotonic(), self.lost()
        self.suspects = {tp: self.suspects[tp] if self.suspects.get(tp, (None,))[0] == hole.start else (hole.start, now)
                         for tp, hole in found.items()}
        stuck = {tp: hole for tp, hole in found.items()
                 if now - self.suspects[tp][1] >= (SEEK_PATIENCE_SECONDS if hole.at_seek else HOLE_PATIENCE_SECONDS)}
        try:
            healed = bool(stuck) and await self.reread_from_committed()
        except Exception as exc:  # e.g. the broker is away: keep the worker, try on the next tick
            log.warning("re-reading lost offsets failed (%s); trying again", type(exc).__name__)
            healed = False
        if healed:
            for tp, hole in stuck.items():
                log.warning("%s[%d]: offsets %d-%d were read but never processed; reading from %d again",
                            tp.topic, tp.partition, hole.start, hole.end - 1, hole.start)
                self.stats["offsets_reread"] += hole.end - hole.start
            self.suspects = {}
