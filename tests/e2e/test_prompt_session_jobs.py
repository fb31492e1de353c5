"""A prompt-session turn's renders and scored prompts are ordinary jobs: listed, batched with other jobs of
their batching key, cancellable, and run by the workers like any job (the test profile, pattern images)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from dependency_injector import providers

from app.adapters.memory.generation import PatternImageGenerator
from app.domain.errors import RenderFailed
from app.domain.jobs import GenerationJob, JobStatus
from app.domain.prompt_sessions import ScoreItem
from app.entrypoints.cli.main import cli
from app.entrypoints.http.app import create_app
from app.entrypoints.library import Atelier
from app.ports.generation import GeneratedImage, GenerationRequest, ProgressSink

ANCHOR = "一个红色的圆形在左上角，白色背景"
BLUE = "把圆形换成蓝色"
BLOCKER = "一个黑色的方形在中间"  # the job that keeps the one worker busy while the others queue
OTHER = "一个绿色的三角形在右下角，白色背景"
PATIENCE = 120.0  # a bound on the waits below, so a broken build fails instead of hanging


class Recording(PatternImageGenerator):
    """Records the prompts of each batched call; a job with the blocker's prompt runs once released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.prompt_batches: list[list[str]] = []

    def generate(self, request: GenerationRequest, progress: ProgressSink) -> list[GeneratedImage]:
        if request.params.prompt == BLOCKER:
            self.release.wait(PATIENCE)
        return super().generate(request, progress)

    def generate_batch(
        self, requests: list[GenerationRequest], progress: list[ProgressSink]
    ) -> list[list[GeneratedImage] | Exception]:
        with self._lock:
            self.prompt_batches.append([r.params.prompt for r in requests])
        return super().generate_batch(requests, progress)


def _open(tmp_path: Path, **settings: Any) -> Atelier:
    return Atelier.open(profile="test", data_dir=str(tmp_path), **settings)


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.02)


def _jobs(atelier: Atelier, owner: str, status: JobStatus | None = None) -> list[GenerationJob]:
    return atelier.jobs(owner=owner, status=status, limit=100).items


class Background:
    """A call run on its own thread (a turn waits for its jobs), its result or error kept."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = call()
            except BaseException as error:
                self.error = error

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def join(self) -> Any:
        self._thread.join(PATIENCE)
        assert not self._thread.is_alive(), "the call did not return"
        return self.result


@pytest.fixture
def busy(tmp_path: Path) -> Iterator[tuple[Atelier, Recording]]:
    """One worker, held by a blocker job (another batching key) until ``release`` is set: what is submitted
    meanwhile waits in the queue, and the worker then batches what shares a key."""
    atelier = _open(tmp_path, workers=1, batch_window=0.05)
    recording = Recording()
    atelier.container.generator.override(providers.Object(recording))
    blocker = atelier.submit(BLOCKER, steps=1)
    _until(lambda: atelier.job(blocker.id).status is JobStatus.RUNNING)
    try:
        yield atelier, recording
    finally:
        recording.release.set()
        atelier.close()


def test_a_turns_renders_are_succeeded_jobs_of_the_sessions_owner(tmp_path: Path) -> None:
    with _open(tmp_path) as atelier:
        session = atelier.prompts.start(ANCHOR, owner="alice")
        turn = atelier.prompts.turn(session.id, BLUE, n=3, k=3, seed=7, steps=2)
        jobs = {job.id: job for job in _jobs(atelier, "alice")}
        assert len(turn.candidates) == 3 and len(jobs) == 3
        for candidate in turn.candidates:  # each candidate's image is its own job's image
            assert candidate.image_id is not None
            (job,) = [job for job in jobs.values() if job.images and job.images[0].id == candidate.image_id]
            assert job.owner == "alice" and job.status is JobStatus.SUCCEEDED
            assert job.params.prompt == candidate.prompt and job.seed == 7 and job.params.steps == 2
            assert Path(atelier.image_path(candidate.image_id, owner="alice")).is_file()
        assert not _jobs(atelier, "local")


def test_a_turns_renders_run_in_one_batch_with_a_queued_job_of_the_same_key(
    busy: tuple[Atelier, Recording],
) -> None:
    atelier, recording = busy
    other = atelier.submit(OTHER, steps=2, owner="bob")  # the turn's model, size and steps: its batching key
    session = atelier.prompts.start(ANCHOR, owner="alice")
    turn_call = Background(lambda: atelier.prompts.turn(session.id, BLUE, n=3, k=3, seed=7, steps=2))
    _until(lambda: len(_jobs(atelier, "alice", JobStatus.QUEUED)) == 3 or turn_call.error is not None)
    recording.release.set()
    turn = turn_call.join()
    assert turn_call.error is None, turn_call.error
    prompts = {c.prompt for c in turn.candidates}
    (batch,) = [batch for batch in recording.prompt_batches if OTHER in batch]
    assert len(prompts) == 3 and len(batch) == 4 and set(batch) == {OTHER, *prompts}
    assert atelier.job(other.id).status is JobStatus.SUCCEEDED
    assert {job.status for job in _jobs(atelier, "alice")} == {JobStatus.SUCCEEDED}


def test_cancelling_a_turns_job_fails_the_turn_and_stores_no_turn(busy: tuple[Atelier, Recording]) -> None:
    atelier, recording = busy
    session = atelier.prompts.start(ANCHOR, owner="alice")
    turn_call = Background(lambda: atelier.prompts.turn(session.id, BLUE, n=3, k=3, seed=7, steps=2))
    _until(lambda: len(_jobs(atelier, "alice", JobStatus.QUEUED)) == 3 or turn_call.error is not None)
    victim = sorted(_jobs(atelier, "alice"), key=lambda job: job.created_at)[1]
    atelier.cancel(victim.id, owner="alice")
    recording.release.set()
    turn_call.join()
    assert isinstance(turn_call.error, RenderFailed), turn_call.error
    assert turn_call.error.code == "cancelled" and turn_call.error.job_id == victim.id
    assert victim.id in turn_call.error.message
    assert atelier.prompts.get(session.id).turns == []
    _until(lambda: all(job.status.finished for job in _jobs(atelier, "alice")))  # nothing left for a worker
    assert atelier.job(victim.id).status is JobStatus.CANCELLED


class Failing(PatternImageGenerator):
    def generate(self, request: GenerationRequest, progress: ProgressSink) -> list[GeneratedImage]:
        raise RuntimeError("the pipeline broke")


def test_a_failing_generator_fails_the_turn_with_the_jobs_error(tmp_path: Path) -> None:
    with _open(tmp_path) as atelier:
        atelier.container.generator.override(providers.Object(Failing()))
        session = atelier.prompts.start(ANCHOR)
        with pytest.raises(RenderFailed) as failed:
            atelier.prompts.turn(session.id, BLUE, n=2, k=2, steps=2)
        assert failed.value.code == "generation_failed"
        assert atelier.prompts.get(session.id).turns == []
        assert atelier.job(failed.value.job_id).status is JobStatus.FAILED
        # The other one failed too, or was cancelled once the turn had failed: none is left for a worker.
        _until(lambda: all(job.status.finished for job in _jobs(atelier, "local")))
        jobs = _jobs(atelier, "local")
        assert len(jobs) == 2 and {job.status for job in jobs} <= {JobStatus.FAILED, JobStatus.CANCELLED}


@pytest.mark.anyio
async def test_http_a_failed_turn_answers_with_the_jobs_error_code(atelier: Atelier) -> None:
    atelier.container.generator.override(providers.Object(Failing()))
    app = create_app(atelier)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://atelier") as client:
        session = (await client.post("/v1/prompt-sessions", json={"prompt": ANCHOR})).json()
        response = await client.post(
            f"/v1/prompt-sessions/{session['id']}/turns", json={"instruction": BLUE, "k": 2, "steps": 2}
        )
        assert response.status_code == 500 and response.json()["error"]["code"] == "generation_failed"
        assert (await client.get(f"/v1/prompt-sessions/{session['id']}")).json()["turns"] == []


def test_without_a_worker_a_turn_gives_up_after_the_time_budget(tmp_path: Path) -> None:
    with _open(tmp_path, start_worker=False, job_time_budget=0.2) as atelier:
        session = atelier.prompts.start(ANCHOR)
        with pytest.raises(RenderFailed) as failed:
            atelier.prompts.turn(session.id, BLUE, n=2, k=2, steps=2)
        assert failed.value.code == "render_timeout"
        assert atelier.prompts.get(session.id).turns == []
        jobs = _jobs(atelier, "local")
        assert len(jobs) == 2 and all(job.status is JobStatus.CANCELLED for job in jobs)  # none runs later


def test_scored_prompts_are_rendered_as_jobs(tmp_path: Path) -> None:
    with _open(tmp_path) as atelier:
        items = [ScoreItem("一个蓝色的圆形在左上角，白色背景", BLUE, ANCHOR, 3), ScoreItem(" ", BLUE, ANCHOR, 4)]
        rows = atelier.container.score_prompts()(items, model="demo", steps=2, owner="lab")
        assert len(rows) == 2 and rows[1]["reward"] == 0.0
        (job,) = _jobs(atelier, "lab")  # the empty prompt is not drawn
        assert job.status is JobStatus.SUCCEEDED and (job.params.prompt, job.seed) == (items[0].prompt, 3)


def test_the_rewrite_command_runs_its_turns_on_a_worker(tmp_path: Path) -> None:
    (tmp_path / "atelier.toml").write_text('profile = "test"\njob_time_budget = 60.0\n', encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["--data-dir", str(tmp_path), "rewrite", ANCHOR, "-k", "2", "--steps", "2", "--json"], input=BLUE + "\n"
    )
    assert result.exit_code == 0, result.output
    turn = json.loads(result.stdout.splitlines()[1])
    assert turn["turn"] == 1 and len(turn["candidates"]) == 2
    assert all(Path(c["path"]).is_file() for c in turn["candidates"])
