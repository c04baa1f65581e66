"""Offsets as the worker's consumer sees them, for /metrics and /api/debug/tasks (positions only, no data)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any, NamedTuple

from faust.types.tuples import ack_lock
from intervaltree import IntervalTree


def consumer_lag(app: Any) -> list[tuple[dict[str, str], float]]:
    """Lag per assigned partition: the fetch highwater minus the committed offset."""
    consumer = app.consumer
    out = []
    for tp in sorted(consumer.assignment()):
        highwater = consumer.highwater(tp)
        committed = consumer._committed_offset.get(tp)  # Faust keeps no public accessor
        if highwater is None or highwater < 0:
            continue
        lag = highwater - (committed if committed is not None else 0)
        out.append(({"topic": tp.topic, "partition": str(tp.partition)}, float(max(0, lag))))
    return out


def consumer_state(app: Any) -> list[dict[str, Any]]:
    """Per assigned partition: committed and read offsets, acked offsets waiting for a gap to
    close, offsets delivered to streams but not yet acked, known gaps, and whether fetching is
    paused. Faust keeps these private."""
    consumer = app.consumer
    paused = set()
    try:
        paused = set(consumer._thread._consumer.paused())  # aiokafka's view
    except Exception:  # another transport, or not started yet
        pass
    in_flight = in_flight_offsets(consumer)
    out = []
    for tp in sorted(consumer.assignment()):
        acked = sorted(consumer._acked.get(tp, ()))
        unacked = sorted(in_flight.get(tp, ()))
        gaps = consumer._gap.get(tp)
        out.append({
            "topic": tp.topic, "partition": tp.partition,
            "committed": consumer._committed_offset.get(tp),
            "read": consumer._read_offset.get(tp),
            "highwater": consumer.highwater(tp),
            "acked_waiting": len(acked), "acked_first": acked[:3],
            "in_flight": len(unacked), "in_flight_first": unacked[:3],
            "gaps": [[i.begin, i.end] for i in sorted(gaps)][:5] if gaps else [],
            "paused": tp in paused,
        })
    return out


def in_flight_offsets(consumer: Any) -> dict[Any, set[int]]:
    """Offsets taken by a stream and not yet acked, per partition."""
    in_flight: dict[Any, set[int]] = {}
    for message in list(consumer._unacked_messages):
        if not message.acked:
            in_flight.setdefault(message.tp, set()).add(message.offset)
    return in_flight


def held_offsets(app: Any) -> dict[Any, set[int]]:
    """Offsets some stream still holds: delivered and not yet acked, or waiting in a channel's
    queue (Faust tracks a message only once a stream takes it from the queue)."""
    held = in_flight_offsets(app.consumer)
    for channel in list(getattr(app.topics, "_topics", ())):
        queue = getattr(getattr(channel, "_queue", None), "_queue", ())  # the channel's asyncio.Queue's deque
        for event in list(queue):
            message = getattr(event, "message", None)
            if message is not None:
                held.setdefault(message.tp, set()).add(message.offset)
    return held


class Hole(NamedTuple):
    start: int  # the committed offset (the head), missing
    end: int  # the next offset accounted for (acked, held, or one past the last read)
    at_seek: bool  # nothing read past the head since a seek: the head may just be on its way


def lost_offsets(app: Any) -> dict[Any, Hole]:
    """Partitions whose next offset to commit was read but is neither acked, nor held by a
    stream, nor known not to exist (a gap): Faust dropped it, and the commit can never move past
    it.

    Seen after a restart: once the tables are recovered, Faust seeks the stream partitions to
    their committed offsets while its fetch loop keeps delivering, and a record fetched before
    the seek moves the read offset past the records fetched after it, which are then dropped."""
    consumer = app.consumer
    held = held_offsets(app)
    out = {}
    partitions = set(consumer._read_offset) | set(consumer._acked)
    for tp in partitions:
        committed = head_offset(consumer, tp)
        read = consumer._read_offset.get(tp)
        if read is None:  # a seek to 0 leaves no read offset: what was acked shows the reading
            read = max(consumer._acked.get(tp) or (), default=None)
        if committed is None or read is None or read < committed:
            continue  # no known head, or nothing read past it
        at_seek = read == committed  # a seek sets the read offset to the head
        if at_seek and not (consumer.highwater(tp) or 0) > committed:
            continue  # and nothing to read there yet
        acked = consumer._acked.get(tp, ())
        gaps = consumer._gap.get(tp)
        holding = held.get(tp, set())
        if committed in holding or committed in acked or (gaps and gaps.overlaps(committed)):
            continue
        later = [o for o in acked if o > committed] + [o for o in holding if o > committed]
        if gaps:
            later += [i.begin for i in gaps if i.begin > committed]
        out[tp] = Hole(committed, min(later, default=read + 1), at_seek)
    return out


def head_offset(consumer: Any, tp: Any) -> int | None:
    """The next offset a partition must process: its committed offset, or where its log starts
    when nothing is committed yet (Faust reads a committed 0 as none)."""
    committed = consumer._committed_offset.get(tp)
    if committed is None:
        return getattr(consumer, "_radflow_log_start", {}).get(tp)
    return int(committed)


async def note_log_starts(app: Any, assigned: Any) -> None:
    """Remember where each assigned partition of radflow's topics begins, so that a partition
    with no commit yet still has a head to guard and to heal."""
    consumer = app.consumer
    tps = [tp for tp in assigned if app.topics.acks_enabled_for(tp.topic)]
    starts = await consumer.earliest_offsets(*tps) if tps else {}
    consumer._radflow_log_start = {tp: offset for tp, offset in starts.items() if offset is not None}


class RefusedGaps(IntervalTree):
    """Faust's record of offsets that do not exist in a partition, kept empty on purpose.

    radflow's topics are never compacted nor written in transactions, so their offsets have no
    gaps. Faust sees one when a record fetched before a seek is delivered after it (the seek sets
    the read offset back, the late record jumps forward) and then counts the offsets in between,
    which were never processed, as acked: they would be committed and never scored. Refused,
    those offsets stay a hole that ``lost_offsets`` finds and the worker reads again. A real gap
    (should a topic ever be compacted) would read as a hole too, and be re-read on every check:
    loud, never silent."""

    refused = 0  # gaps refused by this worker, for /api/stats

    def add(self, interval: Any) -> None:  # addi() and every other way in come through here
        RefusedGaps.refused += 1


class _GapRecords(defaultdict):
    def __init__(self) -> None:
        super().__init__(RefusedGaps)


def guard_offsets(app: Any) -> None:
    """Make the consumer's commits at-least-once for radflow's topics; idempotent.

    - Gaps are refused (see RefusedGaps).
    - A partition commits only once its head, the committed offset itself, is acked. Faust's own
      check lets one missing offset at the head pass as a compacted record, so it commits past
      a message still being processed (faust-streaming issue #606), e.g. a draft that the
      worklist agent, four at a time, has not yet sent: a SIGKILL then loses it. Before the
      first commit the head is where the log starts (``note_log_starts``); failing that, the
      offsets still held by a stream cap the commit.
    """
    consumer = app.consumer
    if not isinstance(consumer._gap, _GapRecords):
        consumer._gap = _GapRecords()
    if getattr(consumer, "_radflow_guarded", False):
        return
    faust_new_offset = consumer._new_offset

    def new_offset(tp: Any) -> int | None:
        acked = consumer._acked.get(tp)
        if acked:
            head = head_offset(consumer, tp)
            if head is not None and min(acked) > head:
                return None  # the head is missing: in flight, or dropped (lost_offsets finds it)
            held = in_flight_offsets(consumer).get(tp) if head is None else None
            if held and min(held) < min(acked):
                return None  # no head known: at least never pass what a stream still holds
        return faust_new_offset(tp)

    consumer._new_offset = new_offset  # the instance's, ahead of the class's method
    consumer._radflow_guarded = True


def tidy_acked(app: Any) -> int:
    """Drop acked offsets below the committed one and duplicates; returns how many went.

    Faust turns its list of acked offsets into a commit by taking the first run of consecutive
    numbers. A duplicate ends that run, so with every offset acked twice (a false gap, then the
    same offsets read again; seen once in 17 SIGKILL runs) the commit crawls one offset per
    commit interval, and hours of work look stuck. Duplicates and offsets already committed mean
    nothing there."""
    consumer = app.consumer
    removed = 0
    with ack_lock:  # the lock Faust's own ack() holds
        for tp, acked in list(consumer._acked.items()):
            committed = consumer._committed_offset.get(tp)
            keep = sorted({o for o in acked if committed is None or o >= committed})
            if len(keep) != len(acked):
                removed += len(acked) - len(keep)
                acked[:] = keep
                consumer._acked_index[tp] = set(keep)
    return removed


async def reread_from_committed(app: Any, settle: float = 0.2) -> bool:
    """Read every assigned partition again from its committed offset, as Faust itself does after
    a rebalance: stop the flow, let the fetch loop give up the batch it was delivering, seek all
    partitions (those never committed to their log start), resume. All of them, because
    stopping the flow cuts that batch short on every partition, and only a seek back brings its
    remaining records again. Seeking one partition under a running fetch is worse: a record
    fetched before the seek lands after it and moves the read offset past the re-read.
    Returns False when Faust is rebalancing (it seeks itself)."""
    consumer = app.consumer
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
            head = head_offset(consumer, tp)
            if consumer._committed_offset.get(tp) is None and head is not None:
                # aiokafka seeks only to a committed offset above 0, so a partition with no
                # commit yet keeps its position: take it back to where its log starts
                await consumer.seek(tp, head)
            gaps = consumer._gap.get(tp)
            if gaps:  # re-reading finds real gaps again; false ones must not count as acked
                gaps.clear()
        return True
    finally:
        if not app.rebalancing:
            consumer.resume_flow()
