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
