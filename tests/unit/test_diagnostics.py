"""The offset guard (streams.offsets): finding offsets Faust read and dropped, and healing its ack
bookkeeping, against Faust's own arithmetic (the real-path check is tests/integration/test_reliability.py)."""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict, deque
from types import SimpleNamespace

import pytest
from faust.transport.consumer import Consumer
from intervaltree import IntervalTree

from kernel.errors import StreamsError
from streams.faust_version import check_faust_version
from streams.offsets import Hole, OffsetGuard


def lost_offsets(app: SimpleNamespace) -> dict:
    return OffsetGuard(app).lost()

TP = ("radflow.drafts", 0)


def _consumer(committed, acked=(), read=None, highwater=None, in_flight=(), gaps=None):
    acked = list(acked)
    consumer = SimpleNamespace(
        _unacked_messages=[SimpleNamespace(tp=TP, offset=o, acked=False) for o in in_flight],
        _acked=defaultdict(list, {TP: acked}), _acked_index=defaultdict(set, {TP: set(acked)}),
        _committed_offset=defaultdict(lambda: None, {TP: committed}),
        _read_offset=defaultdict(lambda: None, {TP: read}),
        _gap=defaultdict(IntervalTree, gaps or {}),
        highwater=lambda tp: highwater,
    )
    consumer._new_offset = functools.partial(Consumer._new_offset, consumer)  # Faust's own arithmetic
    return consumer


def _app(committed, acked=(), read=None, highwater=None, in_flight=(), queued=(), gaps=None):
    consumer = _consumer(committed, acked, read, highwater, in_flight, gaps)
    events = deque(SimpleNamespace(message=SimpleNamespace(tp=TP, offset=o)) for o in queued)
    channel = SimpleNamespace(_queue=SimpleNamespace(_queue=events))
    return SimpleNamespace(consumer=consumer, topics=SimpleNamespace(_topics=[channel]))


def test_a_hole_below_the_acked_offsets_is_lost() -> None:
    assert lost_offsets(_app(1, range(114, 600), read=599)) == {TP: Hole(1, 114, at_seek=False)}


def test_offsets_read_past_with_nothing_acked_are_lost() -> None:
    # the reports partition of the one failure: read to 4975, commit at 404, nothing held
    assert lost_offsets(_app(404, read=4975, highwater=4976)) == {TP: Hole(404, 4976, at_seek=False)}


def test_offsets_still_being_processed_are_not_lost() -> None:
    assert lost_offsets(_app(1, range(114, 600), read=599, in_flight=[1, 2])) == {}
    assert lost_offsets(_app(1, range(114, 600), read=599, queued=[1, 2])) == {}  # not taken yet
    assert lost_offsets(_app(114, range(114, 600), read=599)) == {}  # contiguous
    assert lost_offsets(_app(None, range(114, 600), read=599)) == {}  # nothing committed yet: no claim
    assert lost_offsets(_app(600, read=599, highwater=600)) == {}  # all done


def test_a_partition_just_sought_is_not_lost_until_records_wait_there() -> None:
    # a seek sets the read offset to the committed one before anything is fetched
    assert lost_offsets(_app(404, read=404, highwater=404)) == {}
    assert lost_offsets(_app(404, read=404, highwater=500)) == {TP: Hole(404, 405, at_seek=True)}  # the worker waits longer for these


def test_offsets_known_not_to_exist_are_not_lost() -> None:
    gaps = {TP: IntervalTree.from_tuples([(1, 114)])}  # e.g. transaction markers
    assert lost_offsets(_app(1, range(114, 600), read=599, gaps=gaps)) == {}


def test_duplicate_acks_make_fausts_commit_crawl_and_tidying_ends_it() -> None:
    # the state of the one failure: every offset from 404 acked twice, one stale below the commit
    acked = [403] + [o for o in range(404, 4976) for _ in (0, 1)]
    crawling = _consumer(404, acked, read=4975)
    assert Consumer._new_offset(crawling, TP) == 405  # one offset a commit interval
    assert Consumer._new_offset(crawling, TP) == 406

    tidy = _consumer(404, acked, read=4975)
    guard = OffsetGuard(SimpleNamespace(consumer=tidy))
    assert guard.tidy_acked() == len(acked) - (4976 - 404)
    assert tidy._acked[TP] == list(range(404, 4976)) and tidy._acked_index[TP] == set(range(404, 4976))
    assert Consumer._new_offset(tidy, TP) == 4976  # everything at once
    assert guard.tidy_acked() == 0


def test_a_false_gap_would_commit_unprocessed_offsets_so_gaps_are_refused() -> None:
    # A record fetched before a seek arrives after it: Faust's own _add_gap, then its commit.
    # 404-499 were dropped, never processed; 500-600 were processed and acked.
    naive = _consumer(404, range(500, 601), read=600)
    asyncio.run(Consumer._add_gap(naive, TP, 405, 500))
    # it commits past 96 offsets never processed (404-499); were those read again and acked, each
    # would be acked twice (gap and record), and the commit would crawl as in the test above
    assert Consumer._new_offset(naive, TP) == 501

    guarded = _consumer(404, range(500, 601), read=600)
    app = SimpleNamespace(consumer=guarded, topics=SimpleNamespace(_topics=[]))
    guard = OffsetGuard(app)
    guard.install()
    guard.install()  # idempotent
    asyncio.run(Consumer._add_gap(guarded, TP, 405, 500))
    assert guard.refused == 1 and not guarded._gap[TP]
    assert guarded._new_offset(TP) is None  # the commit waits at the hole...
    assert guard.lost() == {TP: Hole(404, 500, at_seek=False)}  # ...which the worker finds and reads again


def test_no_commit_passes_a_message_still_in_flight() -> None:
    # faust-streaming #606: offset 2585 still being processed, 2586-2589 acked
    naive = _consumer(2585, range(2586, 2590), in_flight=[2585])
    assert naive._new_offset(TP) == 2590  # Faust alone: a SIGKILL now loses 2585

    guarded = _consumer(2585, range(2586, 2590), in_flight=[2585])
    OffsetGuard(SimpleNamespace(consumer=guarded)).install()
    assert guarded._new_offset(TP) is None
    guarded._acked[TP].append(2585)  # processed
    assert guarded._new_offset(TP) == 2590


def test_before_the_first_commit_the_messages_in_flight_cap_it() -> None:
    guarded = _consumer(None, range(3, 10), in_flight=[2])
    OffsetGuard(SimpleNamespace(consumer=guarded)).install()
    assert guarded._new_offset(TP) is None
    guarded._unacked_messages[0].acked = True
    guarded._acked[TP].insert(0, 2)
    assert guarded._new_offset(TP) == 10


def test_with_nothing_committed_the_log_start_is_the_head() -> None:
    # a fresh group: Faust knows no committed offset (it reads a committed 0 as none), and the
    # first fetch batch, offsets 0-37, was dropped
    consumer = _consumer(None, range(38, 100), read=99, highwater=100)
    app = SimpleNamespace(consumer=consumer, topics=SimpleNamespace(_topics=[]))
    assert consumer._new_offset(TP) == 100  # Faust alone commits past the 38 lost records
    consumer._acked[TP].extend(range(38, 100))

    guard = OffsetGuard(app)
    guard.install()
    assert guard.lost() == {}  # no head known: no claim
    guard.log_starts = {TP: 0}  # what note_log_starts asks the broker at assignment
    assert consumer._new_offset(TP) is None
    assert guard.lost() == {TP: Hole(0, 38, at_seek=False)}
    consumer._read_offset[TP] = None  # after a seek to 0, as Faust keeps it
    assert guard.lost() == {TP: Hole(0, 38, at_seek=False)}


class _FlowConsumer:
    """Records the order of calls; the real path is the SIGKILL integration test."""

    def __init__(self, app: SimpleNamespace) -> None:
        self.app, self.calls, self.flow_active = app, [], True
        self._gap = defaultdict(IntervalTree, {TP: IntervalTree.from_tuples([(405, 500)])})
        self._committed_offset = defaultdict(lambda: None, {TP: 404})

    def stop_flow(self) -> None:
        self.flow_active = False
        self.calls.append("stop")

    def resume_flow(self) -> None:
        self.flow_active = True
        self.calls.append("resume")

    async def wait_for_stopped_flow(self) -> None:
        self.calls.append("parked")

    async def perform_seek(self) -> None:
        assert not self.flow_active  # never under a running fetch
        self.calls.append("seek committed")

    async def seek(self, tp: tuple, offset: int) -> None:
        assert not self.flow_active
        self.calls.append(("seek", tp, offset))

    def assignment(self) -> list:
        return [TP, NEVER_COMMITTED]


NEVER_COMMITTED = ("radflow.drafts", 1)


def test_reread_stops_the_flow_then_seeks_and_resumes() -> None:
    app = SimpleNamespace(rebalancing=False)
    app.consumer = _FlowConsumer(app)
    guard = OffsetGuard(app)
    guard.log_starts = {TP: 0, NEVER_COMMITTED: 0}
    assert asyncio.run(guard.reread_from_committed(settle=0))
    # aiokafka leaves a partition with no commit where it is: it goes back to its log start
    assert app.consumer.calls == ["stop", "parked", "seek committed", ("seek", NEVER_COMMITTED, 0), "resume"]
    assert not app.consumer._gap[TP]  # a false gap would count unread offsets as acked

    app.rebalancing = True  # Faust is moving partitions: leave the flow to it
    app.consumer.calls.clear()
    assert not asyncio.run(guard.reread_from_committed(settle=0))
    assert app.consumer.calls == []


def test_the_guard_refuses_a_faust_it_was_not_verified_on() -> None:
    assert check_faust_version()  # the installed one is in the verified range
    for other in ("0.11.3", "0.15.2", "0.16.0", "1.0.0"):
        with pytest.raises(StreamsError, match=f"faust-streaming {other} is installed"):
            OffsetGuard(SimpleNamespace(), faust_version=other)


def test_the_stop_refuses_a_mode_it_was_not_verified_on() -> None:
    from streams.faust_version import check_mode_version

    assert check_mode_version()  # the installed one is in the verified range
    for other in ("0.6.9", "0.8.0", "1.0.0"):
        with pytest.raises(StreamsError, match=f"mode-streaming {other} is installed"):
            check_mode_version(other)
