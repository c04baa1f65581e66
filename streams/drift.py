"""Drift of draft quality per segment (institution × body system × adapter version).

Scores are grouped into tumbling windows of a fixed count ("chunks", as NannyML calls them;
counts rather than hours, because small segments see few reports a day). The first
``reference_chunks`` chunks of a segment form its reference period. Each metric's band is the
mean ± 3 standard deviations of the chunk means. A later chunk whose mean leaves a band raises
an alert.

A new segment first warms up: its first ``chunk_size`` scores close in small windows of
``first_chunk``, so its chart has points within minutes rather than after 20 reports. Warm-up
windows are charted but are not part of the reference period: means of fewer scores spread
more, and would widen the band.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from model.scoring.aggregate import METRICS, observation


@dataclass(frozen=True)
class ChunkResult:
    index: int
    n: int
    means: dict[str, float]
    reference: bool
    warmup: bool  # a small first window: charted, never judged, not in the reference period
    bands: dict[str, tuple[float, float]]  # empty until the reference period is complete
    alerts: dict[str, float]  # metric -> value outside its band


@dataclass
class DriftMonitor:
    """The state of one segment; ``to_dict``/``from_dict`` keep it in a Faust table."""

    chunk_size: int = 20
    reference_chunks: int = 6
    first_chunk: int = 0  # 0, or chunk_size or more: no warm-up
    sums: dict[str, float] = field(default_factory=dict)
    count: int = 0
    chunks: int = 0
    reference_means: list[dict[str, float]] = field(default_factory=list)
    bands: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def warmup_chunks(self) -> int:
        """Small windows a new segment starts with (they cover at most ``chunk_size`` scores)."""
        return self.chunk_size // self.first_chunk if 0 < self.first_chunk < self.chunk_size else 0

    def add(self, observation: dict[str, float]) -> ChunkResult | None:
        """Add one score; returns the chunk's result when this score completes a chunk."""
        for metric in METRICS:
            self.sums[metric] = self.sums.get(metric, 0.0) + observation[metric]
        self.count += 1
        warmup = self.chunks < self.warmup_chunks
        if self.count < (self.first_chunk if warmup else self.chunk_size):
            return None
        means = {m: self.sums[m] / self.count for m in METRICS}
        index, n = self.chunks, self.count
        self.chunks += 1
        self.sums, self.count = {}, 0
        if warmup:
            return ChunkResult(index, n, means, False, True, {}, {})
        if len(self.reference_means) < self.reference_chunks:
            self.reference_means.append(means)
            if len(self.reference_means) == self.reference_chunks:
                self.bands = {m: _band([c[m] for c in self.reference_means]) for m in METRICS}
            return ChunkResult(index, n, means, True, False, dict(self.bands), {})
        alerts = {m: v for m, v in means.items() if not self.bands[m][0] <= v <= self.bands[m][1]}
        return ChunkResult(index, n, means, False, False, dict(self.bands), alerts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunk_size": self.chunk_size, "reference_chunks": self.reference_chunks,
            "first_chunk": self.first_chunk, "sums": self.sums,
            "count": self.count, "chunks": self.chunks, "reference_means": self.reference_means,
            "bands": {m: list(b) for m, b in self.bands.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftMonitor:
        return cls(
            chunk_size=data["chunk_size"], reference_chunks=data["reference_chunks"],
            first_chunk=data.get("first_chunk", 0), sums=data["sums"],  # states written before warm-up had none
            count=data["count"], chunks=data["chunks"], reference_means=data["reference_means"],
            bands={m: (b[0], b[1]) for m, b in data["bands"].items()},
        )


def _band(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean - 3 * sd, mean + 3 * sd


def rebuild(chunks: list[Any], chunk_size: int, reference_chunks: int, first_chunk: int = 0,
            open_window: Sequence[Any] = ()) -> DriftMonitor:
    """A segment's monitor from storage, when the table lost it (short recovery) or lags it.

    The reference period and chunk count come back from the stored chunks (warm-up windows count
    as chunks); the unfinished chunk from ``open_window``, the scores counted in it.
    """
    monitor = DriftMonitor(chunk_size=chunk_size, reference_chunks=reference_chunks, first_chunk=first_chunk)
    for row in sorted(chunks, key=lambda r: r.chunk):
        if row.reference and len(monitor.reference_means) < reference_chunks:
            monitor.reference_means.append({m: float(getattr(row, m)) for m in METRICS})
        monitor.chunks = row.chunk + 1
    if len(monitor.reference_means) == reference_chunks:
        monitor.bands = {m: _band([c[m] for c in monitor.reference_means]) for m in METRICS}
    for score in open_window:
        for metric, value in observation(score).items():
            monitor.sums[metric] = monitor.sums.get(metric, 0.0) + value
        monitor.count += 1
    return monitor
