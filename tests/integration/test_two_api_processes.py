"""Two `atelier serve` processes on one PostgreSQL database and one data directory, as behind a load
balancer: a job submitted to one is seen, served and cancelled through the other."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.entrypoints.library import Atelier
from tests.conftest import register_demo
from tests.e2e.test_server_process import Server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory,
    create_postgres_database: Callable[[str], str],
    demo_models: dict[str, tuple[str, str]],
) -> Iterator[tuple[Server, Server]]:
    url = create_postgres_database("two_apis")
    shared = str(tmp_path_factory.mktemp("shared-data"))
    with Atelier.open(database_url=url, data_dir=shared, start_worker=False) as atelier:
        register_demo(atelier, demo_models)
    pair = (Server(shared, env={"ATELIER_DATABASE_URL": url}), Server(shared, env={"ATELIER_DATABASE_URL": url}))
    try:
        for server in pair:
            server.start()
        yield pair
    finally:
        for server in pair:
            server.stop()


def settled(server: Server, job_id: str, wanted: tuple[str, ...], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = httpx.get(f"{server.url}/v1/jobs/{job_id}", timeout=5).json()
        if job["status"] in wanted:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {wanted}")


def test_a_job_submitted_to_one_process_is_served_by_the_other(servers: tuple[Server, Server]) -> None:
    first, second = servers
    reply = httpx.post(f"{first.url}/v1/jobs", json={"prompt": "一只猫", "steps": 2, "seed": 3}, timeout=10)
    assert reply.status_code == 202, reply.text
    job = settled(second, reply.json()["id"], ("succeeded",))
    image = httpx.get(f"{second.url}{job['images'][0]['url']}", timeout=10)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    listed = [httpx.get(f"{s.url}/v1/jobs", timeout=5).json()["items"][0]["id"] for s in servers]
    assert listed == [job["id"], job["id"]]


def test_a_job_running_in_one_process_is_cancelled_through_the_other(servers: tuple[Server, Server]) -> None:
    first, second = servers
    body = {"prompt": "一座房子", "steps": 150, "width": 256, "height": 256, "num_images": 4}
    job_id = httpx.post(f"{second.url}/v1/jobs", json=body, timeout=10).json()["id"]
    settled(first, job_id, ("running",))
    assert httpx.post(f"{first.url}/v1/jobs/{job_id}/cancel", timeout=10).status_code == 200
    job = settled(second, job_id, ("cancelled", "succeeded", "failed"))
    assert job["status"] == "cancelled" and job["progress"] < 1


def test_a_job_of_a_killed_process_is_taken_over_and_finishes_once(
    tmp_path_factory: pytest.TempPathFactory,
    create_postgres_database: Callable[[str], str],
    demo_models: dict[str, tuple[str, str]],
) -> None:
    url = create_postgres_database("takeover")
    shared = str(tmp_path_factory.mktemp("takeover-data"))
    with Atelier.open(database_url=url, data_dir=shared, start_worker=False) as atelier:
        register_demo(atelier, demo_models)
    env = {"ATELIER_DATABASE_URL": url, "ATELIER_WORKER_HEARTBEAT": "1"}
    doomed, survivor = Server(shared, env=env), Server(shared, env=env)
    try:
        doomed.start()
        body = {"prompt": "一座房子", "steps": 40, "width": 128, "height": 128, "seed": 9}
        job_id = httpx.post(f"{doomed.url}/v1/jobs", json=body, timeout=10).json()["id"]
        settled(doomed, job_id, ("running",))
        survivor.start()  # it finds the job running under a live process, and leaves it
        doomed.kill()
        job = settled(survivor, job_id, ("succeeded", "failed", "cancelled"), timeout=120)
        assert job["status"] == "succeeded", job  # its pid is gone from this host: taken over without the lease
        with Atelier.open(database_url=url, data_dir=shared, start_worker=False) as atelier:
            finished = atelier.job(job_id)
            images_dir = atelier.settings.images_dir
        assert finished.attempts == 2 and finished.worker_id is not None
        images = sorted(p.name for p in Path(images_dir).rglob(f"{job_id}*"))
        assert len(images) == 1, images  # one set of images
    finally:
        survivor.stop()
        doomed.stop()
