"""Worker actors on a real Ray cluster (a head and two worker nodes on this machine), PostgreSQL as the queue and
an API process that runs no jobs: jobs run on both nodes, in batches, keeping to the models the actors hold; a
worker actor or a whole node SIGKILLed mid-job loses nothing (its job runs again, once, after the lease); a cancel
reaches a job on whichever node runs it; a cluster stopped and started again still has every queued job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.entrypoints.library import Atelier
from tests.conftest import register_demo
from tests.e2e.test_server_process import Server
from tests.integration.test_queue_workers import metric
from tests.integration.test_two_api_processes import settled

ray = pytest.importorskip("ray")
from tests.ray_cluster import RAY_ENV, LocalRayCluster, local_ray_cluster  # noqa: E402 (only where ray is installed)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
FINAL = ("succeeded", "failed", "cancelled")
HEARTBEAT = "1"  # seconds; the lease is then its floor, 15 s


class Launcher:
    """``atelier worker --address``: starts the worker actors on the cluster and stops them when it stops."""

    def __init__(self, data_dir: str, env: dict[str, str], address: str, workers: int = 2) -> None:
        self.data_dir, self.env, self.address, self.workers = data_dir, env, address, workers
        self.log = Path(data_dir) / "launcher.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "ATELIER_DATA_DIR": self.data_dir, **RAY_ENV, **self.env}
        command = [sys.executable, "-m", "app.entrypoints.cli.main", "worker", "--address", self.address]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*command, "--workers", str(self.workers), "--max-batch", "4"], env=env, stdout=log, stderr=log
            )

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@dataclass
class Deployment:
    url: str
    data_dir: str
    env: dict[str, str]
    api: Server
    cluster: LocalRayCluster
    launcher: Launcher

    def actors(self, count: int = 2, timeout: float = 120) -> list[dict[str, Any]]:
        """The live worker actors' info (worker id, node, pid) and handles, once ``count`` answer."""
        deadline = time.monotonic() + timeout
        while True:
            found = []
            for entry in ray.util.list_named_actors(all_namespaces=True):
                if entry["namespace"] != "atelier":
                    continue
                handle = ray.get_actor(entry["name"], namespace="atelier")
                try:
                    found.append({**ray.get(handle.info.remote(), timeout=5), "handle": handle})
                except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError):
                    continue
            launcher = self.launcher.proc
            assert launcher is not None and launcher.poll() is None, self.launcher.log.read_text()[-3000:]
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, f"{len(found)} actors answered: {self.launcher.log.read_text()[-3000:]}"
                return found
            time.sleep(0.5)

    def submit(self, **body: Any) -> str:
        reply = httpx.post(f"{self.api.url}/v1/jobs", json={"prompt": "一只猫", **body}, timeout=10)
        assert reply.status_code == 202, reply.text
        job_id: str = reply.json()["id"]
        return job_id

    def stored(self, job_id: str) -> Any:
        with Atelier.open(database_url=self.url, data_dir=self.data_dir, start_worker=False) as atelier:
            return atelier.job(job_id)

    def image_files(self, job_id: str) -> list[str]:
        with Atelier.open(database_url=self.url, data_dir=self.data_dir, start_worker=False) as atelier:
            images = Path(atelier.settings.images_dir)
        return sorted(p.name for p in images.rglob(f"{job_id}*"))


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory,
    create_postgres_database: Callable[[str], str],
    demo_models: dict[str, tuple[str, str]],
) -> Iterator[Deployment]:
    url = create_postgres_database("ray_workers")
    shared = str(tmp_path_factory.mktemp("ray-data"))
    with Atelier.open(database_url=url, data_dir=shared, start_worker=False) as atelier:
        register_demo(atelier, demo_models)
    env = {
        "ATELIER_DATABASE_URL": url,
        "ATELIER_WORKER_HEARTBEAT": HEARTBEAT,
        "ATELIER_QUEUE_POLL": "0.2",
        "ATELIER_MODEL_CACHE_BYTES": "1",  # one pipeline per worker: a model switch is a load
        "OMP_NUM_THREADS": "1",
    }
    api = Server(shared, env=env, args=("--no-workers",))
    with local_ray_cluster(nodes=2, cpus_per_node=1) as cluster:
        launcher = Launcher(shared, env, cluster.address)
        try:
            api.start()
            launcher.start()
            os.environ.update(RAY_ENV)
            ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
            deployment = Deployment(url, shared, env, api, cluster, launcher)
            deployment.actors()
            yield deployment
        finally:
            ray.shutdown()
            deployment.launcher.stop()
            api.stop()


def test_jobs_run_on_both_nodes_in_batches_keeping_to_their_models(deployment: Deployment) -> None:
    actors = deployment.actors()
    assert len({actor["node_id"] for actor in actors}) == 2  # one actor per worker node
    ids = [deployment.submit(steps=4, seed=i, model=("demo", "demo-tiny")[i % 2]) for i in range(16)]
    jobs = [settled(deployment.api, job_id, FINAL, timeout=240) for job_id in ids]
    assert [job["status"] for job in jobs] == ["succeeded"] * 16
    ran_by = {deployment.stored(job_id).worker_id for job_id in ids}
    assert ran_by == {actor["worker_id"] for actor in actors}  # both nodes ran jobs
    texts = [ray.get(actor["handle"].metrics.remote(), timeout=10) for actor in actors]
    assert sum(metric(text, "atelier_job_duration_seconds_count") for text in texts) == 16
    assert sum(metric(text, "atelier_batch_size_count") for text in texts) < 16  # batches larger than one
    loads = sum(metric(text, "atelier_model_loads_total") for text in texts)
    assert 2 <= loads <= 4, texts  # each actor keeps to one model (taken in order: a load per batch)


def test_a_cancel_reaches_a_job_on_another_node(deployment: Deployment) -> None:
    job_id = deployment.submit(steps=150, width=256, height=256, num_images=4)
    settled(deployment.api, job_id, ("running",), timeout=120)
    assert httpx.post(f"{deployment.api.url}/v1/jobs/{job_id}/cancel", timeout=10).status_code == 200
    job = settled(deployment.api, job_id, FINAL, timeout=60)
    assert job["status"] == "cancelled" and job["progress"] < 1


def running_on(deployment: Deployment, job_id: str) -> dict[str, Any]:
    settled(deployment.api, job_id, ("running",), timeout=120)
    worker_id = deployment.stored(job_id).worker_id
    return next(actor for actor in deployment.actors() if actor["worker_id"] == worker_id)


def assert_ran_again_once(deployment: Deployment, job_id: str) -> None:
    job = settled(deployment.api, job_id, FINAL, timeout=180)
    assert job["status"] == "succeeded", job
    stored = deployment.stored(job_id)
    assert stored.attempts == 2
    assert len(deployment.image_files(job_id)) == 1  # one set of images


def test_a_worker_actor_killed_mid_job_is_restarted_and_its_job_runs_again_once(deployment: Deployment) -> None:
    job_id = deployment.submit(steps=60, width=128, height=128, seed=11)
    victim = running_on(deployment, job_id)
    os.kill(victim["pid"], signal.SIGKILL)
    assert_ran_again_once(deployment, job_id)
    restarted = deployment.actors()  # Ray restarted the actor: a new process, a new worker id
    assert victim["pid"] not in {actor["pid"] for actor in restarted} and len(restarted) == 2


def test_a_node_killed_mid_job_loses_nothing(deployment: Deployment) -> None:
    job_id = deployment.submit(steps=60, width=128, height=128, seed=12)
    victim = running_on(deployment, job_id)
    node = deployment.cluster.node_of(victim["pid"])
    deployment.cluster.kill_node(node)  # its raylet and every process of the node
    assert_ran_again_once(deployment, job_id)
    deployment.cluster.add_node(node)  # the actor that lived there comes back on the new node
    assert len(deployment.actors(timeout=180)) == 2


def test_a_cluster_stopped_and_started_again_keeps_every_queued_job(deployment: Deployment) -> None:
    deployment.launcher.stop()  # the actors stop with their launcher: nothing runs jobs now
    ray.shutdown()
    deployment.cluster.stop()
    ids = [deployment.submit(steps=2, seed=i) for i in range(4)]
    time.sleep(1)
    assert {httpx.get(f"{deployment.api.url}/v1/jobs/{i}", timeout=5).json()["status"] for i in ids} == {"queued"}
    with local_ray_cluster(nodes=2, cpus_per_node=1) as cluster:
        launcher = Launcher(deployment.data_dir, deployment.env, cluster.address)
        deployment.launcher, deployment.cluster = launcher, cluster
        launcher.start()
        try:
            jobs = [settled(deployment.api, job_id, FINAL, timeout=240) for job_id in ids]
        finally:
            launcher.stop()
    assert [job["status"] for job in jobs] == ["succeeded"] * 4
