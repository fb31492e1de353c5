"""Metrics in Prometheus' text format (``GET /metrics``).

Two kinds: what the process that runs jobs records as it happens (job durations by mode, family and final
state; batch sizes), and what is read when the metrics are scraped (queue depth and the oldest job's wait per
model, jobs by status, live workers, the pipelines in memory, CUDA memory). The scraped ones come from the
database, so every API process reports the same queue; the recorded ones are this process's, as Prometheus
expects of a process it scrapes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.domain.errors import AtelierError
from app.domain.jobs import JobStatus
from app.ports.metrics import JobMetrics, TextMetrics
from app.ports.persistence import JobReader
from app.ports.workers import WorkerRegistry

log = logging.getLogger(__name__)
# Seconds a job runs: tiny CPU models take a fraction of a second, SDXL on a CPU minutes.
DURATION_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16)
# Seconds to a served language model's first token: milliseconds for a tiny model, seconds under load on a CPU.
FIRST_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Loaded = Callable[[], list[tuple[str, int]]]  # names and bytes of the pipelines in memory


class PrometheusMetrics(JobMetrics, TextMetrics):
    """One registry per instance (tests and several apps in one process do not share counters)."""

    def __init__(
        self,
        reader: JobReader,
        workers: Callable[[], int],
        registry: WorkerRegistry | None = None,
        heartbeat: float = 10.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        # The pipelines in memory: set by a process that runs jobs (an API-only process has none to report).
        self.loaded: Loaded = list
        self.loads: Callable[[], int] = lambda: 0  # pipelines loaded since the start (a model switch is one)
        self.registry = CollectorRegistry(auto_describe=True)
        self._durations = Histogram(
            "atelier_job_duration_seconds",
            "Seconds from a job's start to its end, by mode, model family and final status.",
            ["mode", "family", "status"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self._batches = Histogram(
            "atelier_batch_size", "Jobs per generator call.", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self._text_batches = Histogram(
            "atelier_llm_batch_size",
            "Sequences of a language model that started decoding together.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self._first_token = Histogram(
            "atelier_llm_time_to_first_token_seconds",
            "Seconds from a chat or completion request to its first token, by model.",
            ["model"],
            buckets=FIRST_TOKEN_BUCKETS,
            registry=self.registry,
        )
        self._sequences = Counter(
            "atelier_llm_sequences",
            "Sequences a language model generated, by how they ended: stop, length, cancelled (the client went away)"
            " or error.",
            ["model", "finish_reason"],
            registry=self.registry,
        )
        self._tokens = Counter(
            "atelier_llm_tokens",
            "Tokens of the prompts a language model read and of the answers it generated.",
            ["model", "kind"],
            registry=self.registry,
        )
        cluster = _Cluster(registry, heartbeat, now) if registry is not None else None
        snapshot = _Snapshot(reader, workers, lambda: self.loaded(), now, cluster, lambda: self.loads())
        self.registry.register(snapshot)

    def job_finished(self, mode: str, family: str, status: str, seconds: float) -> None:
        self._durations.labels(mode=mode, family=family, status=status).observe(max(0.0, seconds))

    def batch_ran(self, size: int) -> None:
        self._batches.observe(size)

    def text_batch_ran(self, model: str, size: int) -> None:
        self._text_batches.labels(model=model).observe(size)

    def text_first_token(self, model: str, seconds: float) -> None:
        self._first_token.labels(model=model).observe(max(0.0, seconds))

    def text_sequence_ended(self, model: str, finish_reason: str, prompt_tokens: int, completion_tokens: int) -> None:
        self._sequences.labels(model=model, finish_reason=finish_reason).inc()
        self._tokens.labels(model=model, kind="prompt").inc(prompt_tokens)
        self._tokens.labels(model=model, kind="completion").inc(completion_tokens)

    def watch_models(self, loaded: Loaded, loads: Callable[[], int]) -> None:
        self.loaded, self.loads = loaded, loads

    def exposition(self) -> tuple[bytes, str]:
        """The text to answer a scrape with, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _Snapshot(Collector):
    """What is read at each scrape."""

    def __init__(
        self,
        reader: JobReader,
        workers: Callable[[], int],
        loaded: Loaded,
        now: Callable[[], datetime],
        cluster: _Cluster | None = None,
        loads: Callable[[], int] = lambda: 0,
    ):
        self._reader, self._workers, self._loaded, self._now, self._cluster = reader, workers, loaded, now, cluster
        self._loads = loads

    def describe(self) -> list[Metric]:
        return []  # read at scrape time: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("atelier_database_up", "1 when the database answered this scrape.")
        try:
            queue, counts = self._reader.queue(), self._reader.status_counts()
        except AtelierError as e:  # the database is down: say so, and report what this process knows
            log.warning("metrics: the database did not answer: %s", e.message)
            up.add_metric([], 0)
            yield up
        else:
            up.add_metric([], 1)
            yield up
            depth = GaugeMetricFamily("atelier_queue_depth", "Queued jobs per model.", labels=["model"])
            wait = GaugeMetricFamily(
                "atelier_queue_oldest_wait_seconds", "How long the oldest queued job has waited.", labels=["model"]
            )
            now = self._now()
            for entry in queue:
                depth.add_metric([entry.model], entry.queued)
                wait.add_metric([entry.model], max(0.0, (now - entry.oldest).total_seconds()))
            jobs = GaugeMetricFamily("atelier_jobs", "Jobs in the database by status.", labels=["status"])
            for status in JobStatus:
                jobs.add_metric([status.value], counts.get(status, 0))
            yield from (depth, wait, jobs)
            if self._cluster is not None:
                yield from self._cluster.collect()
        yield GaugeMetricFamily("atelier_workers", "Live worker threads in this process.", value=self._workers())
        loaded = self._loaded()
        models = GaugeMetricFamily(
            "atelier_loaded_model_bytes", "Pipelines in memory and their weights' bytes.", labels=["model"]
        )
        for name, size in loaded:
            models.add_metric([name], size)
        yield GaugeMetricFamily("atelier_loaded_models", "Pipelines in memory.", value=len(loaded))
        yield models
        yield CounterMetricFamily("atelier_model_loads", "Pipelines loaded by this process.", value=self._loads())
        yield from _cuda_memory()


class _Cluster:
    """Every live process that runs jobs on the database (the worker registry), and the models they hold."""

    def __init__(self, registry: WorkerRegistry, heartbeat: float, now: Callable[[], datetime]) -> None:
        self._registry, self._heartbeat, self._now = registry, heartbeat, now

    def collect(self) -> Iterator[Metric]:
        now = self._now()
        live = [w for w in self._registry.workers() if w.live(now, self._heartbeat)]
        yield GaugeMetricFamily("atelier_cluster_workers", "Live processes running jobs on this database.", len(live))
        holding = GaugeMetricFamily(
            "atelier_cluster_model_workers", "Live processes holding each model in memory.", labels=["model"]
        )
        for model in sorted({m for w in live for m in w.models}):
            holding.add_metric([model], sum(model in w.models for w in live))
        yield holding


def _cuda_memory() -> Iterator[Metric]:
    """Allocated and reserved bytes per CUDA device, when torch is loaded and sees one."""
    import sys

    torch = sys.modules.get("torch")  # not imported for this: a process without a generator has no GPU memory
    if torch is None or not torch.cuda.is_available():
        return
    memory = GaugeMetricFamily("atelier_gpu_memory_bytes", "CUDA memory per device.", labels=["device", "kind"])
    for index in range(torch.cuda.device_count()):
        memory.add_metric([str(index), "allocated"], torch.cuda.memory_allocated(index))
        memory.add_metric([str(index), "reserved"], torch.cuda.memory_reserved(index))
    yield memory
