"""Offsets as the worker's consumer sees them, for /metrics and /api/debug/tasks (positions only, no data)."""

from __future__ import annotations

from typing import Any


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
    close, known gaps, and whether fetching is paused. Faust keeps these private."""
    consumer = app.consumer
    paused = set()
    try:
        paused = set(consumer._thread._consumer.paused())  # aiokafka's view
    except Exception:  # another transport, or not started yet
        pass
    out = []
    for tp in sorted(consumer.assignment()):
        acked = sorted(consumer._acked.get(tp, ()))
        gaps = consumer._gap.get(tp)
        out.append({
            "topic": tp.topic, "partition": tp.partition,
            "committed": consumer._committed_offset.get(tp),
            "read": consumer._read_offset.get(tp),
            "highwater": consumer.highwater(tp),
            "acked_waiting": len(acked), "acked_first": acked[:3],
            "gaps": [[i.begin, i.end] for i in sorted(gaps)][:5] if gaps else [],
            "paused": tp in paused,
        })
    return out


def lost_offsets(app: Any) -> dict[Any, tuple[int, int]]:
    """Partitions whose offsets [committed, first acked) were read but are neither acked nor held
    by any stream: Faust dropped them. This happens on the embedded broker when a rebalance
    comes while the worker recovers its tables. A SIGKILLed member stays in the group until
    its session expires, so the restarted worker rebalances again mid-recovery. The commit
    then never moves past the hole, and those reports are never scored."""
    consumer = app.consumer
    in_flight: dict[Any, int] = {}
    for message in list(consumer._unacked_messages):
        if not message.acked:
            in_flight[message.tp] = min(in_flight.get(message.tp, message.offset), message.offset)
    out = {}
    for tp, acked in list(consumer._acked.items()):
        committed = consumer._committed_offset.get(tp)
        if committed is None or not acked:
            continue
        first = min(acked)
        if first <= committed or in_flight.get(tp, first) < first:
            continue  # contiguous, or the missing offsets are still being processed
        gaps = consumer._gap.get(tp)
        missing = [o for o in range(committed, first) if not (gaps and gaps.overlaps(o))]
        if missing:
            out[tp] = (committed, first)
    return out
