"""Finding offsets Faust read and dropped (the real-path check is tests/integration/test_reliability.py)."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

from intervaltree import IntervalTree

from streams.diagnostics import lost_offsets

TP = ("radflow.drafts", 0)


def _app(committed, acked, in_flight=(), gaps=None):
    messages = [SimpleNamespace(tp=TP, offset=o, acked=False) for o in in_flight]
    consumer = SimpleNamespace(_unacked_messages=messages, _acked={TP: list(acked)},
                               _committed_offset={TP: committed}, _gap=defaultdict(IntervalTree, gaps or {}))
    return SimpleNamespace(consumer=consumer)


def test_a_hole_below_the_acked_offsets_is_lost() -> None:
    assert lost_offsets(_app(1, range(114, 600))) == {TP: (1, 114)}


def test_offsets_still_being_processed_are_not_lost() -> None:
    assert lost_offsets(_app(1, range(114, 600), in_flight=[1, 2])) == {}
    assert lost_offsets(_app(114, range(114, 600))) == {}  # contiguous
    assert lost_offsets(_app(None, range(114, 600))) == {}  # nothing committed yet: no claim


def test_offsets_known_not_to_exist_are_not_lost() -> None:
    gaps = {TP: IntervalTree.from_tuples([(1, 114)])}  # e.g. transaction markers
    assert lost_offsets(_app(1, range(114, 600), gaps=gaps)) == {}
