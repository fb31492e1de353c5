"""The body of a worker actor on a Ray cluster (``ATELIER_EXECUTOR=ray``): an Atelier instance in the actor's
process, claiming jobs from the database's queue on one thread of its own."""

from __future__ import annotations

import os
from typing import Any

from app.composition import configure_logging
from app.entrypoints.library import Atelier
from app.settings import Settings


class RemoteWorker:
    """Built with the launcher's settings (as a dict, its executor already ``queue``)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        configure_logging(settings["log_format"])  # into the actor's log file in the Ray session
        self._atelier = Atelier(Settings(**settings))
        self._atelier.migrate()
        self._atelier.start_worker(recover=False)  # the jobs of dead workers are reaped on every heartbeat

    def info(self) -> dict[str, Any]:
        """This worker's id in the registry, its Ray node and its process."""
        import ray

        node = ray.get_runtime_context().get_node_id()
        return {"worker_id": self._atelier.worker_id, "node_id": node, "pid": os.getpid()}

    def metrics(self) -> str:
        """This worker's Prometheus text (jobs it ran, batch sizes, model loads)."""
        return self._atelier.metrics()[0].decode()

    def stop(self) -> None:
        """Finish the running jobs, leave the registry and unload the models."""
        self._atelier.close()
