"""Deleting jobs with their images (HTTP, library, CLI) and the retention setting."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.domain.errors import JobNotFound, JobRunning
from app.entrypoints.http.app import create_app
from app.entrypoints.library import Atelier
from tests.e2e.conftest import finished, open_test_atelier

pytestmark = pytest.mark.anyio
SMALL = {"prompt": "猫", "width": 64, "height": 64, "steps": 2}


def client(atelier: Atelier, key: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(atelier))
    return httpx.AsyncClient(transport=transport, base_url="http://a", headers={"Authorization": f"Bearer {key}"})


async def test_a_finished_job_is_deleted_with_its_images_and_only_by_its_owner(tmp_path: Path) -> None:
    atelier = open_test_atelier(tmp_path, api_keys=("alice", "bob"))
    try:
        async with client(atelier, "alice") as alice, client(atelier, "bob") as bob:
            job = await finished(alice, (await alice.post("/v1/jobs", json=SMALL)).json()["id"])
            image_url = job["images"][0]["url"]
            assert (await alice.get(image_url)).status_code == 200
            path = Path(atelier.image_path(job["images"][0]["id"]))
            assert (await bob.delete(f"/v1/jobs/{job['id']}")).status_code == 404  # not bob's
            reply = await alice.delete(f"/v1/jobs/{job['id']}")
            assert reply.status_code == 204 and reply.content == b""
            assert (await alice.get(f"/v1/jobs/{job['id']}")).status_code == 404
            assert (await alice.get(image_url)).status_code == 404
            assert not path.exists()
            again = await alice.delete(f"/v1/jobs/{job['id']}")
            assert again.status_code == 404 and again.json()["error"]["code"] == "job_not_found"
    finally:
        atelier.close()


def test_a_queued_job_is_deleted_and_never_runs_a_running_one_is_refused(tmp_path: Path) -> None:
    atelier = open_test_atelier(tmp_path, start_worker=False)
    try:
        queued, running = atelier.submit(**SMALL), atelier.submit(**SMALL)
        with atelier.container.uow_factory()() as uow:
            job = uow.jobs.get(running.id)
            job.start(job.created_at)
            uow.jobs.save(job)
            uow.commit()
        atelier.delete_job(queued.id)
        with pytest.raises(JobRunning, match="cancel it"):
            atelier.delete_job(running.id)
        atelier.start_worker(recover=False)
        atelier.container.executor().enqueue(queued.id)  # a worker that still held it finds nothing to run
        assert atelier.wait(running.id, timeout=0.2).status.value == "running"
        with pytest.raises(JobNotFound):
            atelier.job(queued.id)
    finally:
        atelier.close()


def test_retention_deletes_only_finished_jobs_by_age(tmp_path: Path) -> None:
    atelier = open_test_atelier(tmp_path)
    try:
        done = [atelier.generate(**SMALL) for _ in range(2)]
        assert atelier.prune_jobs(days=30) == 0  # all of them are younger
        assert atelier.prune_jobs(days=1e-9) == 2
        assert atelier.jobs().total == 0 and not Path(atelier.settings.images_dir, done[0].id).exists()
    finally:
        atelier.close()


async def test_a_model_is_unregistered_by_an_admin_key_only(tmp_path: Path) -> None:
    atelier = open_test_atelier(tmp_path, api_keys=("user",), admin_keys=("admin",))
    try:
        atelier.add_model("spare", "spare")
        async with client(atelier, "user") as user, client(atelier, "admin") as admin:
            refused = await user.delete("/v1/models/spare")
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
            assert (await admin.delete("/v1/models/spare")).status_code == 204
            assert "spare" not in [m["name"] for m in (await user.get("/v1/models")).json()["data"]]
            missing = await admin.delete("/v1/models/spare")
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_model"
    finally:
        atelier.close()
