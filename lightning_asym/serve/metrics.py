"""Counters and latency histograms of the proxy, in Prometheus' text exposition format.

`prometheus_client` is not a dependency of the project, so this is a small writer of the text
format (version 0.0.4): counters with labels, one gauge and cumulative histograms. Every
update takes one lock; the proxy updates a handful of series per request.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
"""Histogram upper bounds in seconds: from a no-op review (~1 ms) to a slow local model."""

PREFIX = "lightning_asym_serve_"

_HELP = {
    "requests_total": ("counter", "Chat completion requests answered, by HTTP status."),
    "reviews_total": ("counter", "Proposals reviewed."),
    "verdicts_total": ("counter", "Review verdicts, by verdict."),
    "revisions_total": ("counter", "Revisions asked of the upstream actor after a revise verdict."),
    "fallbacks_total": ("counter", "Requests whose revision budget ran out (the fallback applied)."),
    "upstream_errors_total": ("counter", "Upstream failures after retries, by kind."),
    "rejected_total": ("counter", "Requests refused before supervision, by reason."),
    "in_flight": ("gauge", "Requests being supervised now."),
    "upstream_seconds": ("histogram", "Latency of one upstream actor call (retries included)."),
    "review_seconds": ("histogram", "Latency of one reviewer call."),
    "request_seconds": ("histogram", "Latency of a whole chat completion request."),
}


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, x: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, x)] += 1
        self.sum += x


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    esc = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for _, v in labels)
    return "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(labels, esc)) + "}"


class ServeMetrics:
    """The proxy's metrics; `render()` is the body of `GET /metrics`."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        self._hist = {name: _Histogram(buckets) for name, (kind, _) in _HELP.items() if kind == "histogram"}
        self.in_flight = 0

    def inc(self, name: str, value: float = 1, **labels: str) -> None:
        if _HELP[name][0] != "counter":
            raise KeyError(f"{name} is not a counter")
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._counters[name]
            series[key] = series.get(key, 0) + value

    def observe(self, name: str, seconds: float) -> None:
        with self._lock:
            self._hist[name].observe(seconds)

    def add_in_flight(self, delta: int) -> None:
        with self._lock:
            self.in_flight += delta

    def value(self, name: str, **labels: str) -> float:
        """A counter's current value (0 if never incremented); for tests and the bench."""
        with self._lock:
            return self._counters[name].get(tuple(sorted(labels.items())), 0)

    def count(self, name: str) -> int:
        """How many observations a histogram holds."""
        with self._lock:
            return sum(self._hist[name].counts)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, (kind, help_) in _HELP.items():
                full = PREFIX + name
                lines += [f"# HELP {full} {help_}", f"# TYPE {full} {kind}"]
                if kind == "counter":
                    series = self._counters.get(name) or {}
                    for key, v in sorted(series.items()):
                        lines.append(f"{full}{_labels(key)} {v:g}")
                elif kind == "gauge":
                    lines.append(f"{full} {self.in_flight}")
                else:
                    h = self._hist[name]
                    total = 0
                    for bound, c in zip((*h.buckets, float("inf")), h.counts):
                        total += c
                        le = "+Inf" if bound == float("inf") else f"{bound:g}"
                        lines.append(f'{full}_bucket{{le="{le}"}} {total}')
                    lines += [f"{full}_sum {h.sum:.6f}", f"{full}_count {total}"]
        return "\n".join(lines) + "\n"
