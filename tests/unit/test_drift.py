import random

from streams.drift import DriftMonitor


def _obs(r: float, missed: bool = False) -> dict[str, float]:
    return {"rouge1": r, "rouge2": r, "rougeL": r, "missed_rate": float(missed), "over_rate": 0.0}


def test_reference_band_then_alert_on_drop() -> None:
    rng = random.Random(1)
    monitor = DriftMonitor(chunk_size=10, reference_chunks=6)
    results = [monitor.add(_obs(0.6 + rng.uniform(-0.05, 0.05), rng.random() < 0.2)) for _ in range(60)]
    chunks = [r for r in results if r]
    assert len(chunks) == 6 and all(c.reference and not c.alerts for c in chunks)
    low, high = chunks[-1].bands["rougeL"]
    assert low < 0.6 < high
    # the same quality stays inside the band
    steady = [monitor.add(_obs(0.6 + rng.uniform(-0.05, 0.05))) for _ in range(10)][-1]
    assert steady and "rougeL" not in steady.alerts
    # a collapse in quality leaves it
    dropped = [monitor.add(_obs(0.2, missed=True)) for _ in range(10)][-1]
    assert dropped and {"rouge1", "rouge2", "rougeL"} <= set(dropped.alerts)


def test_state_round_trips_through_a_dict() -> None:
    monitor = DriftMonitor(chunk_size=3, reference_chunks=2)
    for _ in range(7):
        monitor.add(_obs(0.5))
    restored = DriftMonitor.from_dict(monitor.to_dict())
    assert restored == monitor


def test_a_new_segment_warms_up_in_small_windows_outside_the_reference() -> None:
    monitor = DriftMonitor(chunk_size=6, reference_chunks=2, first_chunk=3)
    assert monitor.warmup_chunks == 2
    results = [monitor.add(_obs(0.5)) for _ in range(6 + 12)]
    closed = [(i + 1, r) for i, r in enumerate(results) if r]
    # two warm-up windows of 3 (charted, never judged), then the reference period in windows of 6
    assert [(at, r.n, r.warmup, r.reference) for at, r in closed] == [
        (3, 3, True, False), (6, 3, True, False), (12, 6, False, True), (18, 6, False, True)]
    assert not closed[0][1].bands and closed[-1][1].bands  # the band comes from full windows only
    assert [r.index for _, r in closed] == [0, 1, 2, 3]


def test_no_warm_up_when_the_first_window_is_not_smaller() -> None:
    for first in (0, 6, 10):
        monitor = DriftMonitor(chunk_size=6, reference_chunks=2, first_chunk=first)
        results = [monitor.add(_obs(0.5)) for _ in range(6)]
        assert results[:5] == [None] * 5 and results[5] is not None and results[5].reference


def test_rebuild_counts_warm_up_windows_but_not_into_the_band() -> None:
    from types import SimpleNamespace

    from streams.drift import METRICS, rebuild

    def row(chunk: int, reference: bool) -> SimpleNamespace:
        return SimpleNamespace(chunk=chunk, reference=reference, **{m: 0.5 for m in METRICS})

    monitor = rebuild([row(0, False), row(1, False), row(2, True)], 6, 2, first_chunk=3)
    assert monitor.chunks == 3 and len(monitor.reference_means) == 1 and not monitor.bands
    assert monitor.add(_obs(0.5)) is None  # the next window is a full one: 6 scores
    old_state = {k: v for k, v in monitor.to_dict().items() if k != "first_chunk"}  # written before warm-up existed
    assert DriftMonitor.from_dict(old_state).first_chunk == 0
