"""A small Prometheus registry (text exposition format 0.0.4): counters, gauges, histograms.

Labels name outcomes and topics, never patients or report text.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable

LabelKey = tuple[tuple[str, str], ...]
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _labels(key: LabelKey, extra: tuple[tuple[str, str], ...] = ()) -> str:
    items = key + extra
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                          for k, v in items) + "}"


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:
        raise NotImplementedError


Collect = Callable[[], Iterable[tuple[dict[str, str], float]]]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, collect: Collect | None = None) -> None:
        super().__init__(name, help_text)
        self.values: dict[LabelKey, float] = defaultdict(float)
        self.collect = collect  # read at scrape time from counters kept elsewhere

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        with self._lock:
            self.values[tuple(sorted(labels.items()))] += amount

    def render(self) -> list[str]:
        values = {tuple(sorted(k.items())): v for k, v in self.collect()} if self.collect else dict(self.values)
        return self.header() + [f"{self.name}{_labels(k)} {v}" for k, v in sorted(values.items())]


class Gauge(_Metric):
    kind = "gauge"

    def __init__(self, name: str, help_text: str, collect: Collect | None = None) -> None:
        super().__init__(name, help_text)
        self.values: dict[LabelKey, float] = {}
        self.collect = collect  # computed at scrape time when set (e.g. consumer lag)

    def set(self, value: float, **labels: str) -> None:
        with self._lock:
            self.values[tuple(sorted(labels.items()))] = value

    def render(self) -> list[str]:
        if self.collect is not None:
            try:
                values = {tuple(sorted(labels.items())): v for labels, v in self.collect()}
            except Exception:  # a scrape must never break the service
                values = {}
        else:
            values = dict(self.values)
        return self.header() + [f"{self.name}{_labels(k)} {v}" for k, v in sorted(values.items())]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> None:
        super().__init__(name, help_text)
        self.buckets = buckets
        self.counts: dict[LabelKey, list[int]] = {}
        self.sums: dict[LabelKey, float] = defaultdict(float)

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            counts = self.counts.setdefault(key, [0] * (len(self.buckets) + 1))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
            counts[-1] += 1
            self.sums[key] += value

    def render(self) -> list[str]:
        lines = self.header()
        for key, counts in sorted(self.counts.items()):
            for bound, count in zip(self.buckets, counts):
                lines.append(f"{self.name}_bucket{_labels(key, (('le', repr(bound)),))} {count}")
            lines.append(f"{self.name}_bucket{_labels(key, (('le', '+Inf'),))} {counts[-1]}")
            lines.append(f"{self.name}_sum{_labels(key)} {self.sums[key]}")
            lines.append(f"{self.name}_count{_labels(key)} {counts[-1]}")
        return lines


class Registry:
    def __init__(self) -> None:
        self.metrics: list[_Metric] = []

    def counter(self, name: str, help_text: str, collect: Collect | None = None) -> Counter:
        return self._add(Counter(name, help_text, collect))

    def gauge(self, name: str, help_text: str, collect: Collect | None = None) -> Gauge:
        return self._add(Gauge(name, help_text, collect))

    def histogram(self, name: str, help_text: str, buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> Histogram:
        return self._add(Histogram(name, help_text, buckets))

    def _add(self, metric):  # type: ignore[no-untyped-def]
        self.metrics.append(metric)
        return metric

    def render(self) -> str:
        return "\n".join(line for m in self.metrics for line in m.render()) + "\n"


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
