"""Worker actors on a Ray cluster: Ray places and supervises them, the database stays the queue.

Each actor is one long-lived Atelier worker (one GPU, or one CPU slot) in a process of its own on some node of
the cluster: the worker class it is given (``app.entrypoints.library.remote.RemoteWorker``) opens its own instance
over the same database and data dir, claims jobs from the database's queue (``ClaimingJobExecutor``), keeps its
pipelines warm and reports itself in the worker registry; it answers ``info``, ``metrics`` and ``stop``. Ray restarts
an actor that dies (``max_restarts=-1``); the jobs it held return to the queue once its heartbeat has been
silent for the lease (``RecoverJobs``), whichever worker notices first, and run again under a new attempt.
Nothing is queued in Ray, so a cluster that stops loses no job: queued jobs wait in the database.

The process that starts the actors (``atelier worker --address``, or a server with ``ATELIER_EXECUTOR=ray``) runs
no job itself: ``enqueue`` has nothing to do (the actors look at the queue every ``queue_poll`` seconds), cancel
is the database's flag, which a running job reads at its next progress write.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from app.ports.generation import BatchHandler, JobExecutor, JobHandler
from app.settings import Settings

log = logging.getLogger(__name__)
_PING_TIMEOUT = 2.0  # seconds a live actor has to answer
_LIVE_CACHE = 2.0  # seconds a count of live actors is reused (readiness and metrics ask often)
NAMESPACE = "atelier"  # actors are named "worker-<launcher>-<n>" in it, for operators' tools to find them


class RayJobExecutor(JobExecutor):
    """Starts ``settings.workers`` actors on the cluster at ``settings.ray_address`` and keeps handles on them."""

    pulls = True
    remote = True  # jobs run in the actors' processes, never in this one

    def __init__(self, settings: Settings, worker: type, launcher: str = "") -> None:
        self._settings = settings
        self._worker = worker  # the actor's class: built with the settings, it claims and runs jobs
        self._launcher = launcher or uuid.uuid4().hex[:8]
        self._actors: list[Any] = []
        self._lock = threading.Lock()
        self._connected_here = False
        self._live: tuple[float, int] = (0.0, 0)

    def start(self, handler: JobHandler, batch_handler: BatchHandler | None = None) -> None:
        import ray

        with self._lock:
            if self._actors:
                return
            if not ray.is_initialized():
                address = None if self._settings.ray_address == "local" else self._settings.ray_address
                ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING, log_to_driver=False)
                self._connected_here = True
            gpus = self._settings.ray_gpus_per_worker
            actor: Any = ray.remote(self._worker)
            options: dict[str, Any] = {
                "max_restarts": -1,  # restarted (with its models reloaded) whenever its process or node dies
                "max_task_retries": -1,
                "max_concurrency": 4,  # info and stop answer while the instance's threads run jobs
                "num_gpus": gpus,
                "num_cpus": 0 if gpus else 1,
                "namespace": NAMESPACE,
            }
            config = dataclasses.asdict(self._settings) | {"executor": "queue", "workers": 1}
            self._actors = [
                actor.options(name=f"worker-{self._launcher}-{i}", **options).remote(config)
                for i in range(self._settings.workers)
            ]
        log.info("started %d worker actors on the Ray cluster", len(self._actors))

    def actors(self) -> list[Any]:
        with self._lock:
            return list(self._actors)

    def describe(self, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Each actor's worker id, node and process, once all have started (``GetTimeoutError`` after timeout)."""
        import ray

        found: list[dict[str, Any]] = ray.get([a.info.remote() for a in self.actors()], timeout=timeout)
        return found

    def enqueue(self, job_id: str, batch_key: str | None = None) -> None:
        return  # the job is in the database; an actor claims it

    def enqueue_many(self, jobs: Sequence[tuple[str, str | None]]) -> None:
        return

    def cancel(self, job_id: str) -> None:
        return  # the database's cancel flag reaches the job at its next progress write

    def wait(self, job_id: str, timeout: float | None = None) -> bool:
        return True  # nothing runs here: the caller reads the job from the database

    def live_workers(self) -> int:
        """Actors that answered within two seconds (counted at most every two seconds)."""
        import ray

        checked, count = self._live
        actors = self.actors()
        if not actors or time.monotonic() - checked < _LIVE_CACHE:
            return count if actors else 0
        ready, _ = ray.wait([a.info.remote() for a in actors], num_returns=len(actors), timeout=_PING_TIMEOUT)
        self._live = (time.monotonic(), len(ready))
        return len(ready)

    def shutdown(self, wait: bool = True) -> None:
        import ray

        with self._lock:
            actors, self._actors = self._actors, []
        if not actors or not ray.is_initialized():
            return
        if wait:
            stops = [a.stop.remote() for a in actors]
            ray.wait(stops, num_returns=len(stops), timeout=60)
        for actor in actors:
            ray.kill(actor, no_restart=True)
        if self._connected_here:
            ray.shutdown()
            self._connected_here = False
