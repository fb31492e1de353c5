"""The whole job slice through the library facade, on SQLite and on PostgreSQL, with the
real tiny diffusers model: what a host application embedding Atelier gets."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from app.domain.jobs import JobStatus
from app.entrypoints.library import Atelier


def test_generate_persists_the_job_and_its_pngs(database_url: str, tmp_path: Path, demo_model: str) -> None:
    with Atelier.open(database_url=database_url, data_dir=str(tmp_path)) as atelier:
        atelier.add_model("demo", demo_model)
        job = atelier.generate("一只红色的圆形在中间", seed=11, steps=2, num_images=2)
        assert job.status is JobStatus.SUCCEEDED, job.error_message
        assert [image.seed for image in job.images] == [11, 12]
        paths = [atelier.image_path(image.id) for image in job.images]
    for path in paths:
        picture = Image.open(path)
        assert picture.size == (64, 64) and "Model: demo" in picture.info["parameters"]
    with Atelier.open(database_url=database_url, data_dir=str(tmp_path), start_worker=False) as reopened:
        stored = reopened.job(job.id)
        assert stored.status is JobStatus.SUCCEEDED and stored.images == job.images
        assert reopened.jobs().total == 1


def test_a_queued_job_left_behind_is_run_by_the_next_process(
    database_url: str, tmp_path: Path, demo_model: str
) -> None:
    with Atelier.open(database_url=database_url, data_dir=str(tmp_path), start_worker=False) as first:
        first.add_model("demo", demo_model)
        job = first.submit("一只猫", steps=2, seed=1)  # accepted, then the process goes away
    assert job.status is JobStatus.QUEUED
    with Atelier.open(database_url=database_url, data_dir=str(tmp_path), recover=True) as second:
        done = second.wait(job.id, timeout=60)
    assert done.status is JobStatus.SUCCEEDED and len(done.images) == 1


@pytest.mark.postgres
def test_server_profile_with_two_workers_completes_every_job(
    create_postgres_database: object, tmp_path: Path, demo_model: str
) -> None:
    url = create_postgres_database("server")  # type: ignore[operator]
    with Atelier.open(database_url=url, data_dir=str(tmp_path), profile="server", workers=2) as atelier:
        atelier.add_model("demo", demo_model)
        jobs = [atelier.submit(f"第{i}只猫", steps=2, seed=i) for i in range(4)]
        done = [atelier.wait(job.id, timeout=120) for job in jobs]
    assert {job.status for job in done} == {JobStatus.SUCCEEDED}
    assert [job.seed for job in done] == [0, 1, 2, 3]
    assert all(job.started_at is not None for job in done)
