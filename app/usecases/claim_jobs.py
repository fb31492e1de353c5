"""Claim work from the shared queue: the jobs table is the queue of every process on every host.

A worker asks for up to ``limit`` jobs. It first chooses a model (``choose_model``): one it holds in memory while
that model has queued work, unless another model's oldest job has waited longer than ``switch_after`` seconds;
with nothing queued for its models, preferably one that no other live worker holds. It then takes the oldest
queued job of that model and the queued jobs that share its batching key, marks them running under its id in one
transaction and returns them. On PostgreSQL the rows are read ``FOR UPDATE SKIP LOCKED``, so racing workers take
disjoint jobs without waiting on each other; elsewhere the versioned commit lets one claim through and the other
tries again. The worker's heartbeat in the registry is the lease on every job it holds (``RecoverJobs``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from datetime import datetime

from app.domain.errors import ConcurrentUpdate
from app.domain.generation import batch_key
from app.domain.jobs import GenerationJob
from app.ports.clock import Clock
from app.ports.persistence import JobReader, QueuedModel, UnitOfWorkFactory
from app.ports.workers import WorkerRegistry

log = logging.getLogger(__name__)
_TRIES = 3
_LOOK_AHEAD = 4  # queued jobs read per job wanted, to find ones that share the first job's batching key


def choose_model(
    queue: Sequence[QueuedModel],
    loaded: Collection[str],
    held_elsewhere: Collection[str],
    now: datetime,
    switch_after: float,
) -> str | None:
    """The model whose jobs a worker holding ``loaded`` should take next, or None with nothing queued."""
    oldest_first = sorted(queue, key=lambda q: (q.oldest, q.model))
    starving = [q for q in oldest_first if q.model not in loaded and (now - q.oldest).total_seconds() > switch_after]
    warm = [q for q in oldest_first if q.model in loaded]
    if starving:  # waited too long: switch to it, preferably to one no other worker is taking care of
        return ([q for q in starving if q.model not in held_elsewhere] or starving)[0].model
    if warm:
        return warm[0].model
    unheld = [q for q in oldest_first if q.model not in held_elsewhere]
    return (unheld or oldest_first)[0].model if oldest_first else None


class ClaimJobs:
    """``claim(loaded, limit)``: jobs now running under ``worker_id``, at most ``limit`` of one batching key."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        reader: JobReader,
        clock: Clock,
        registry: WorkerRegistry | None,
        heartbeat: float,
        worker_id: str | None,
        switch_after: float = 30.0,
    ) -> None:
        self._uow = uow
        self._reader = reader
        self._clock = clock
        self._registry = registry
        self._heartbeat = heartbeat
        self._worker_id = worker_id
        self._switch_after = switch_after

    def __call__(self, loaded: Collection[str], limit: int) -> list[GenerationJob]:
        for _try in range(_TRIES):
            queue = self._reader.queue()
            if not queue:
                return []
            now = self._clock.now()
            model = choose_model(queue, loaded, self._held_elsewhere(now), now, self._switch_after)
            if model is None:
                return []
            try:
                claimed = self._claim(model, max(limit, 1))
            except ConcurrentUpdate:
                continue  # another worker took some of them first: look again
            if claimed:
                return claimed
        return []

    def _claim(self, model: str, limit: int) -> list[GenerationJob]:
        now = self._clock.now()
        with self._uow() as uow:
            candidates = uow.jobs.claimable(model, limit * _LOOK_AHEAD)
            if not candidates:
                return []
            key = batch_key(candidates[0].params)
            chosen = [candidates[0]]
            if key is not None:
                chosen += [job for job in candidates[1:] if batch_key(job.params) == key][: limit - 1]
            for job in chosen:
                job.start(now, self._worker_id)
                uow.jobs.save(job)
            uow.commit()
        for job in chosen:
            extra: dict[str, object] = {
                "event": "job_started",
                "job_id": job.id,
                "model": model,
                "mode": str(job.params.mode),
            }
            extra |= {"attempt": job.attempts, "batch": len(chosen)}
            log.info("job %s started", job.id, extra=extra)
        return chosen

    def _held_elsewhere(self, now: datetime) -> set[str]:
        if self._registry is None:
            return set()
        live = [w for w in self._registry.workers() if w.id != self._worker_id and w.live(now, self._heartbeat)]
        return {model for worker in live for model in worker.models}
