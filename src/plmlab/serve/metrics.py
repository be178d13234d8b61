"""Prometheus text exposition (format 0.0.4) of the server's counters, gauges and histograms,
without a client library: a few dozen lines, thread-safe (the worker thread updates them too)."""

from __future__ import annotations

import threading

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def _labels(labels: tuple) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}" if labels else ""


class Counter:
    kind = "counter"

    def __init__(self, name: str, help: str) -> None:
        self.name, self.help, self.values, self.lock = name, help, {}, threading.Lock()

    def inc(self, amount: float = 1.0, **labels) -> None:
        key = tuple(sorted(labels.items()))
        with self.lock:
            self.values[key] = self.values.get(key, 0.0) + amount

    def samples(self) -> list[str]:
        with self.lock:
            return [f"{self.name}{_labels(k)} {v:g}" for k, v in sorted(self.values.items())] or [f"{self.name} 0"]


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float) -> None:
        with self.lock:
            self.values[()] = float(value)


class Histogram:
    kind = "histogram"

    def __init__(self, name: str, help: str, buckets=LATENCY_BUCKETS) -> None:
        self.name, self.help, self.buckets, self.lock = name, help, tuple(buckets), threading.Lock()
        self.series: dict[tuple, list] = {}  # labels -> [counts per bucket, sum, count]

    def observe(self, value: float, **labels) -> None:
        key = tuple(sorted(labels.items()))
        with self.lock:
            counts, total, n = self.series.get(key, ([0] * len(self.buckets), 0.0, 0))
            counts = [c + (value <= b) for c, b in zip(counts, self.buckets)]
            self.series[key] = (counts, total + value, n + 1)

    def samples(self) -> list[str]:
        lines = []
        with self.lock:
            for key, (counts, total, n) in sorted(self.series.items()):
                for b, c in zip(self.buckets, counts):
                    lines.append(f"{self.name}_bucket{_labels(key + (('le', f'{b:g}'),))} {c}")
                lines.append(f"{self.name}_bucket{_labels(key + (('le', '+Inf'),))} {n}")
                lines += [f"{self.name}_sum{_labels(key)} {total:g}", f"{self.name}_count{_labels(key)} {n}"]
        return lines


class Metrics:
    def __init__(self) -> None:
        self.requests = Counter("plmlab_requests_total", "HTTP requests answered, by endpoint and status")
        self.prompt_tokens = Counter("plmlab_prompt_tokens_total", "prompt tokens of accepted requests")
        self.completion_tokens = Counter("plmlab_completion_tokens_total", "tokens generated")
        self.queue_depth = Gauge("plmlab_queue_depth", "jobs waiting for the worker")
        self.latency = Histogram("plmlab_request_latency_seconds", "time from request to last byte, by endpoint")
        self.first_token = Histogram("plmlab_time_to_first_token_seconds", "time from request to first token")
        self.batch_rows = Histogram("plmlab_batch_rows", "rows per batch the worker runs", BATCH_BUCKETS)

    def render(self) -> str:
        out = []
        for m in vars(self).values():
            out += [f"# HELP {m.name} {m.help}", f"# TYPE {m.name} {m.kind}", *m.samples()]
        return "\n".join(out) + "\n"
