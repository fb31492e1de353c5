from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.domain.errors import IllegalTransition, ImageNotFound, JobNotCancellable
from app.domain.generation import GenerationParams
from app.domain.jobs import GenerationJob, ImageRef, JobStatus, image_id_for, job_id_of

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def job() -> GenerationJob:
    params = GenerationParams(prompt="猫", model="demo", seed=1, width=64, height=64)
    return GenerationJob.create("local", params, NOW)


def test_happy_path() -> None:
    j = job()
    assert j.status is JobStatus.QUEUED and j.seed == 1
    j.start(NOW)
    j.report_progress(0.5, NOW)
    j.report_progress(0.25, NOW)  # progress never goes back
    assert j.progress == 0.5
    ref = ImageRef(id=image_id_for(j.id, 0), seed=1, width=64, height=64)
    j.succeed([ref], NOW)
    assert (j.status, j.progress, j.images, j.finished_at) == (JobStatus.SUCCEEDED, 1.0, [ref], NOW)


@pytest.mark.parametrize("finish", ["succeed", "fail", "mark_cancelled"])
def test_finished_jobs_are_final(finish: str) -> None:
    j = job()
    j.start(NOW)
    {
        "succeed": lambda: j.succeed([], NOW),
        "fail": lambda: j.fail("x", "y", NOW),
        "mark_cancelled": lambda: j.mark_cancelled(NOW),
    }[finish]()
    assert j.status.finished
    with pytest.raises(IllegalTransition):
        j.start(NOW)
    with pytest.raises(JobNotCancellable):
        j.cancel(NOW)
    with pytest.raises(IllegalTransition):
        j.requeue(NOW)


def test_illegal_transitions_raise() -> None:
    j = job()
    with pytest.raises(IllegalTransition):
        j.succeed([], NOW)
    with pytest.raises(IllegalTransition):
        j.report_progress(0.1, NOW)
    with pytest.raises(IllegalTransition):
        j.requeue(NOW)


def test_cancel_queued_is_immediate_running_is_requested() -> None:
    queued = job()
    queued.cancel(NOW)
    assert queued.status is JobStatus.CANCELLED
    running = job()
    running.start(NOW)
    running.cancel(NOW)
    assert running.status is JobStatus.RUNNING and running.cancel_requested
    running.mark_cancelled(NOW)
    assert running.status is JobStatus.CANCELLED


def test_requeue_resets_a_running_job() -> None:
    j = job()
    j.start(NOW)
    j.report_progress(0.7, NOW)
    j.requeue(NOW)
    assert (j.status, j.progress, j.started_at) == (JobStatus.QUEUED, 0.0, None)


def test_image_ids_cannot_escape() -> None:
    j = job()
    assert job_id_of(image_id_for(j.id, 3)) == j.id
    for bad in ["../../etc/passwd", j.id, f"{j.id}-x", f"{j.id.upper()}-0", f"{j.id}-0/../x", ""]:
        with pytest.raises(ImageNotFound):
            job_id_of(bad)


def test_unresolved_params_are_rejected() -> None:
    from app.domain.errors import InvalidParameters

    with pytest.raises(InvalidParameters):
        GenerationJob.create("local", GenerationParams(prompt="猫", model="demo"), NOW)
