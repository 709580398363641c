"""Prometheus metrics of one process, in a registry of its own (so tests can run many apps).

Counters and histograms are fed where things happen (engine, translator, subscriptions);
gauges that describe shared state (queue length, jobs by status, backends) are read fresh
from their sources on each scrape, by `refresh`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_FAST = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_SLOW = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


class BackendGauge(Protocol):
    @property
    def url(self) -> str: ...
    @property
    def healthy(self) -> bool: ...
    @property
    def inflight(self) -> int: ...
    @property
    def mean_run_s(self) -> float | None: ...


class TranslationCounts(Protocol):
    @property
    def cache_hits(self) -> int: ...
    @property
    def cache_misses(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def passthroughs(self) -> int: ...


class _TranslationCollector(Collector):
    def __init__(self, stats: TranslationCounts) -> None:
        self._stats = stats

    def collect(self) -> Iterator[CounterMetricFamily]:
        cache = CounterMetricFamily(
            "stargraph_translation_cache", "Translation cache lookups", labels=["result"]
        )
        cache.add_metric(["hit"], self._stats.cache_hits)
        cache.add_metric(["miss"], self._stats.cache_misses)
        yield cache
        failures = CounterMetricFamily(
            "stargraph_translation_failures", "Translations that failed", labels=["outcome"]
        )
        failures.add_metric(["passthrough"], self._stats.passthroughs)
        failures.add_metric(["refused"], self._stats.failures - self._stats.passthroughs)
        yield failures


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.queue_length = Gauge("stargraph_queue_length", "Jobs waiting in the queue", registry=r)
        self.jobs = Gauge("stargraph_jobs", "Jobs by status", ["status"], registry=r)
        self.dispatch_gap = Histogram(
            "stargraph_dispatch_gap_seconds",
            "From a backend slot freeing to the next job posted to it",
            buckets=_FAST,
            registry=r,
        )
        self.run_time = Histogram(
            "stargraph_job_run_seconds",
            "Execution start to success per job (engine run, image download, settlement)",
            ["backend"],
            buckets=_SLOW,
            registry=r,
        )
        self.backend_healthy = Gauge(
            "stargraph_backend_healthy", "1 when the backend takes jobs", ["backend"], registry=r
        )
        self.backend_inflight = Gauge(
            "stargraph_backend_inflight", "Jobs inside the backend", ["backend"], registry=r
        )
        self.backend_mean_run = Gauge(
            "stargraph_backend_mean_run_seconds",
            "Moving average of engine time per job, as the worker measures it",
            ["backend"],
            registry=r,
        )
        self.translation_time = Histogram(
            "stargraph_translation_seconds",
            "Prompt translation time, cache hits included",
            buckets=_SLOW[:8],
            registry=r,
        )
        self.subscriptions_open = Gauge(
            "stargraph_subscriptions_open",
            "GraphQL subscriptions open in this process",
            registry=r,
        )

    def refresh(
        self,
        queue_length: int,
        jobs_by_status: Mapping[str, int],
        backends: Sequence[BackendGauge],
    ) -> None:
        """Set the gauges that mirror shared state, just before a scrape."""
        self.queue_length.set(queue_length)
        for status, count in jobs_by_status.items():
            self.jobs.labels(status=status).set(count)
        for backend in backends:
            self.backend_healthy.labels(backend=backend.url).set(1 if backend.healthy else 0)
            self.backend_inflight.labels(backend=backend.url).set(backend.inflight)
            if backend.mean_run_s is not None:
                self.backend_mean_run.labels(backend=backend.url).set(backend.mean_run_s)

    def observe_runs(self, runs: Iterable[tuple[str, float]]) -> None:
        """Record (backend, seconds) of jobs that finished since the last call."""
        for backend, seconds in runs:
            self.run_time.labels(backend=backend).observe(seconds)

    def watch_translation(self, stats: TranslationCounts) -> None:
        """Export the translator's own counters (cache hits and misses, failures)."""
        self.registry.register(_TranslationCollector(stats))

    def render(self) -> bytes:
        return generate_latest(self.registry)
