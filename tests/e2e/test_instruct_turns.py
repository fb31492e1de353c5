"""Prompt-session turns that edit the current image, end to end on the test profile (pattern images, real
image files): the library, HTTP (with its 422s and OpenAPI) and `atelier rewrite --strategy`. The test
catalog gains ``edit``, a Qwen-Image-Edit model, beside the demo model."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner
from dependency_injector import providers
from PIL import Image

from app.adapters.memory.generation import InMemoryModelCatalog
from app.domain.families import Family
from app.domain.jobs import job_id_of
from app.domain.models import ModelInfo
from app.domain.prompt_sessions import CandidateKind, TurnStrategy
from app.domain.specs import Mode
from app.entrypoints.cli import chat
from app.entrypoints.cli.main import cli
from app.entrypoints.http.app import create_app
from app.entrypoints.library import Atelier

ANCHOR = "一个红色的圆形在左上角，白色背景"
BLUE = "把圆形换成蓝色"
TRIANGLE = "加一个小三角形"
pytestmark = pytest.mark.anyio


def with_edit_model(atelier: Atelier) -> Atelier:
    """The test catalog with ``edit`` added (the providers built per job and per turn resolve it)."""
    atelier.container.catalog.override(
        providers.Object(
            InMemoryModelCatalog(
                [
                    ModelInfo(name="demo", path="memory://demo", source="memory://demo", default_size=64),
                    ModelInfo(
                        name="edit",
                        path="memory://edit",
                        source="memory://edit",
                        default_size=64,
                        family=Family.QWEN_IMAGE_EDIT,
                    ),
                ]
            )
        )
    )
    return atelier


@pytest.fixture
def atelier(tmp_path: Path) -> Iterator[Atelier]:
    instance = with_edit_model(Atelier.open(data_dir=str(tmp_path), profile="test"))
    yield instance
    instance.close()


@pytest.fixture
async def client(atelier: Atelier) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(atelier)), base_url="http://a") as c:
        yield c


def test_the_library_edits_the_current_image_and_ranks_both_kinds(atelier: Atelier) -> None:
    session = atelier.prompts.start(ANCHOR, edit_model="edit", owner="alice")
    first = atelier.prompts.turn(session.id, BLUE, k=1, seed=3, steps=2, owner="alice")
    image = first.chosen_image
    assert image is not None and first.strategy is TurnStrategy.REWRITE

    edit = atelier.prompts.turn(session.id, TRIANGLE, strategy="edit", k=2, seed=8, steps=2, owner="alice")
    assert [c.kind for c in edit.candidates] == [CandidateKind.EDIT] * 2 and edit.chosen == first.chosen
    for candidate in edit.candidates:  # an instruct job of the edit model on the owner's copy of the image
        assert candidate.image_id is not None and candidate.edited_image == image
        job = atelier.job(job_id_of(candidate.image_id))
        assert (job.owner, job.params.mode, job.params.model, job.params.prompt) == (
            "alice",
            Mode.INSTRUCT,
            "edit",
            TRIANGLE,
        )
        assert job.params.init_image is not None
        upload = atelier.container.images().input_image(job.params.init_image, "alice")
        assert Image.open(upload.path).size == Image.open(atelier.image_path(image)).size == (64, 64)
        assert Image.open(atelier.image_path(candidate.image_id, owner="alice")).size == (64, 64)
    stored = atelier.prompts.get(session.id)
    assert stored.current_prompt == first.chosen and stored.current_image == edit.candidates[0].image_id

    both = atelier.prompts.turn(session.id, "背景改成黑色", strategy="both", k=2, seed=9, steps=2, owner="alice")
    assert {c.kind for c in both.candidates} == {CandidateKind.REWRITE, CandidateKind.EDIT}
    assert len(both.candidates) == 4 and both.edit_model == "edit"
    ranked = [(c.drifted, -(c.score or 0.0)) for c in both.candidates]
    assert ranked == sorted(ranked)  # one ranking over both kinds
    assert all(c.edited_image == edit.candidates[0].image_id for c in both.candidates if c.kind is CandidateKind.EDIT)


async def test_http_takes_edit_turns_and_refuses_bad_ones_with_422(client: httpx.AsyncClient) -> None:
    reply = await client.post("/v1/prompt-sessions", json={"prompt": ANCHOR, "edit_model": "edit"})
    assert reply.status_code == 201, reply.text
    session = reply.json()
    assert session["edit_model"] == "edit" and session["current_image"] is None
    turns = f"/v1/prompt-sessions/{session['id']}/turns"

    refused = await client.post(turns, json={"instruction": BLUE, "strategy": "edit", "steps": 2})
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "no_current_image" and refused.json()["error"]["field"] == "strategy"
    bad = await client.post(turns, json={"instruction": BLUE, "strategy": "paint"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "strategy"
    assert bad.json()["error"]["code"] == "invalid_parameters"

    first = await client.post(turns, json={"instruction": BLUE, "k": 1, "seed": 3, "steps": 2})
    assert first.status_code == 201, first.text
    assert first.json()["strategy"] == "rewrite" and first.json()["candidates"][0]["kind"] == "rewrite"
    unable = await client.post(
        turns, json={"instruction": TRIANGLE, "strategy": "edit", "edit_model": "demo", "steps": 2}
    )
    assert unable.status_code == 422
    assert unable.json()["error"] == {
        "code": "unsupported_capability",
        "message": unable.json()["error"]["message"],
        "field": "edit_model",
    }
    assert "instruct" in unable.json()["error"]["message"]

    edited = await client.post(turns, json={"instruction": TRIANGLE, "strategy": "edit", "k": 2, "steps": 2})
    assert edited.status_code == 201, edited.text
    body = edited.json()
    assert body["strategy"] == "edit" and body["edit_model"] == "edit" and body["chosen"] == first.json()["chosen"]
    candidates = body["candidates"]
    assert {c["kind"] for c in candidates} == {"edit"}
    assert {c["edited_image"] for c in candidates} == {first.json()["candidates"][0]["image_id"]}
    assert (await client.get(candidates[1]["image_url"])).status_code == 200

    chosen = await client.post(f"{turns}/{body['number']}/choose", json={"index": 1})
    assert chosen.status_code == 200, chosen.text
    now = (await client.get(f"/v1/prompt-sessions/{session['id']}")).json()
    assert now["current_image"] == candidates[1]["image_id"] and now["current_prompt"] == body["chosen"]
    assert now["current_image_url"] == candidates[1]["image_url"]
    assert len(now["turns"]) == 2  # the refused requests stored nothing


async def test_openapi_documents_the_turn_strategy(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    turn_in = spec["components"]["schemas"]["TurnIn"]["properties"]
    assert turn_in["strategy"]["enum"] == ["rewrite", "edit", "both"] and turn_in["strategy"]["default"] == "rewrite"
    assert "current image" in turn_in["strategy"]["description"]
    assert "instruction" in turn_in["edit_model"]["description"]
    route = spec["paths"]["/v1/prompt-sessions/{session_id}/turns"]["post"]
    assert "no_current_image" in json.dumps(route["responses"]["422"])


def test_atelier_rewrite_takes_a_strategy_and_an_edit_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "atelier.toml").write_text('profile = "test"\njob_time_budget = 60.0\n', encoding="utf-8")
    opened = chat.open_atelier

    def open_with_edit_model(ctx: click.Context, **settings: Any) -> Atelier:
        return with_edit_model(opened(ctx, **settings))

    monkeypatch.setattr(chat, "open_atelier", open_with_edit_model)
    script = f"{BLUE}\n:strategy rewrite\n{BLUE}\n:strategy edit\n{TRIANGLE}\n:strategy paint\n"
    args = ["--data-dir", str(tmp_path), "rewrite", ANCHOR, "-k", "2", "--steps", "2", "--seed", "4"]
    result = CliRunner().invoke(cli, [*args, "--strategy", "edit", "--edit-model", "edit", "--json"], input=script)
    assert result.exit_code == 0, result.output
    start, to_rewrite, first, to_edit, edit = (json.loads(line) for line in result.stdout.splitlines())
    assert start["current_prompt"] == ANCHOR
    assert (to_rewrite["strategy"], to_edit["strategy"]) == ("rewrite", "edit")
    assert first["turn"] == 1 and first["strategy"] == "rewrite" and first["edit_model"] is None
    assert edit["turn"] == 2 and edit["strategy"] == "edit" and edit["edit_model"] == "edit"
    assert {c["kind"] for c in edit["candidates"]} == {"edit"} and len(edit["candidates"]) == 2
    assert {c["edited_image"] for c in edit["candidates"]} == {first["candidates"][0]["image_id"]}
    assert all(Path(c["path"]).is_file() for c in edit["candidates"])
    errors = result.stderr.strip().splitlines()  # the first line had no image to edit; paint is no strategy
    assert len(errors) == 2 and "current image" in errors[0] and ":strategy" in errors[1]


@pytest.mark.slow
def test_an_edit_turn_on_real_pipelines_survives_a_restart(tmp_path: Path) -> None:
    """SQLite and diffusers: the tiny Qwen-Image draws the rewrites, the tiny Qwen-Image-Edit edits them."""
    from app.adapters.diffusers.tiny import build_tiny  # the tests may import adapters; the app's entrypoints may not

    build_tiny("qwen-image", str(tmp_path / "qwen-image"))
    build_tiny("qwen-image-edit", str(tmp_path / "qwen-image-edit"))
    data_dir = str(tmp_path / "data")
    with Atelier.open(data_dir=data_dir) as atelier:
        atelier.add_model("qwen-image", str(tmp_path / "qwen-image"))
        atelier.add_model("qwen-image-edit", str(tmp_path / "qwen-image-edit"))
        session = atelier.prompts.start(ANCHOR, model="qwen-image", edit_model="qwen-image-edit")
        first = atelier.prompts.turn(session.id, BLUE, k=1, seed=1, steps=2)
        both = atelier.prompts.turn(session.id, TRIANGLE, strategy="both", k=1, seed=2, steps=2)
        kinds = {c.kind: c for c in both.candidates}
        assert set(kinds) == {CandidateKind.REWRITE, CandidateKind.EDIT}
        edit = kinds[CandidateKind.EDIT]
        assert edit.edited_image == first.chosen_image and edit.image_id is not None
        size = Image.open(atelier.image_path(first.chosen_image or "")).size
        assert Image.open(atelier.image_path(edit.image_id)).size == size  # an edit keeps the image's size
    with Atelier.open(data_dir=data_dir, start_worker=False) as again:  # a new process reads the same session
        stored = again.prompts.get(session.id)
        assert stored.edit_model == "qwen-image-edit" and stored.turns[1].candidates == both.candidates
        assert stored.turns[1].strategy is TurnStrategy.BOTH and stored.turns[1].edit_model == "qwen-image-edit"
