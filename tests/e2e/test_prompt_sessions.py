"""Prompt sessions end to end: the library on the shipped demo model (SQLite), `atelier chat`, and HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from app.demo_world.parsing import parse_caption
from app.entrypoints.cli.main import cli
from app.entrypoints.library import Atelier
from app.lab.prompts.runs import train_preference

ANCHOR = "一个红色的圆形在中间，白色背景"


def test_a_turn_on_the_demo_model_renders_ranks_and_survives_a_restart(data_dir: str) -> None:
    with Atelier.open(data_dir=data_dir) as atelier:
        session = atelier.prompts.start(ANCHOR)
        turn = atelier.prompts.turn(session.id, "把圆形换成蓝色", k=3, seed=11)
        assert len(turn.candidates) == 3 and turn.settings.seed == 11
        assert all(parse_caption(c.prompt).objects[0].colour == "blue" for c in turn.candidates)  # rule rewriter
        scores = [c.score for c in turn.candidates]
        assert scores == sorted(scores, reverse=True)  # ranked, best first
        best = turn.candidates[0]
        assert best.scores["integrity"] >= 0.5, turn.candidates  # the checker sees the blue circle kept in place
        reading = atelier.read_scene(best.image_id, caption=best.prompt)
        assert reading.seen.objects and reading.seen.objects[0].colour == "blue"
        assert all(Path(atelier.image_path(c.image_id)).is_file() for c in turn.candidates if c.image_id)
    with Atelier.open(data_dir=data_dir, start_worker=False) as again:  # a new process reads the same session
        stored = again.prompts.get(session.id)
        assert stored.turns[0].candidates == turn.candidates and stored.current_prompt == best.prompt


def test_atelier_chat_reads_instructions_and_commands(data_dir: str) -> None:
    script = "把圆形换成蓝色\n:pick 1\n:bogus\n:pick x\n:undo\n背景改成黑色\n:show\n"
    result = CliRunner().invoke(
        cli,
        ["--data-dir", data_dir, "chat", ANCHOR, "-k", "2", "--seed", "3", "--steps", "4", "--json"],
        input=script,
    )
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    start, first, picked, undone, second, shown = lines
    assert start["current_prompt"] == ANCHOR
    assert first["turn"] == 1 and len(first["candidates"]) == 2 and first["seed"] == 3
    assert all(Path(c["path"]).is_file() for c in first["candidates"])
    assert picked["chosen_index"] == 1 and picked["chosen"] == first["candidates"][1]["prompt"]
    assert undone["head"] is None and undone["current_prompt"] == ANCHOR
    assert second["turn"] == 2 and second["parent"] is None and second["prompt_before"] == ANCHOR
    assert "黑" in second["chosen"]
    assert shown["head"] == 2
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("error: ") for line in errors)  # the loop went on


def test_atelier_chat_needs_a_prompt_or_a_session(data_dir: str) -> None:
    result = CliRunner().invoke(cli, ["--data-dir", data_dir, "chat"], input="")
    assert result.exit_code == 2 and "--session" in result.stderr
    result = CliRunner().invoke(cli, ["--data-dir", data_dir, "chat", "--session", "ps-missing"], input="")
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr


@pytest.mark.anyio
async def test_http_session_turn_choose_undo_branch(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/prompt-sessions", json={"prompt": ANCHOR})
    assert response.status_code == 201, response.text
    session = response.json()
    assert session["current_prompt"] == ANCHOR and session["turns"] == [] and session["model"] == "demo"
    sid = session["id"]
    response = await client.post(
        f"/v1/prompt-sessions/{sid}/turns", json={"instruction": "加一个小三角形", "k": 2, "seed": 5, "steps": 2}
    )
    assert response.status_code == 201, response.text
    turn = response.json()
    assert turn["number"] == 1 and len(turn["candidates"]) == 2 and turn["settings"]["seed"] == 5
    image = await client.get(turn["candidates"][0]["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    response = await client.post(f"/v1/prompt-sessions/{sid}/turns/1/choose", json={"index": 1})
    assert response.json()["chosen"] == turn["candidates"][1]["prompt"]
    response = await client.post(f"/v1/prompt-sessions/{sid}/turns/1/choose", json={"prompt": "一个绿色的星形"})
    assert response.json()["chosen"] == "一个绿色的星形" and response.json()["chosen_index"] is None
    off = await client.post(
        f"/v1/prompt-sessions/{sid}/turns", json={"instruction": "更精致一些", "rewrite": False, "steps": 2}
    )
    assert off.json()["candidates"][0]["prompt"] == "一个绿色的星形" and off.json()["note"]
    assert (await client.post(f"/v1/prompt-sessions/{sid}/undo")).json()["head"] == 1
    branched = (await client.post(f"/v1/prompt-sessions/{sid}/branch", json={"turn": None})).json()
    assert branched["head"] is None and branched["current_prompt"] == ANCHOR and len(branched["turns"]) == 2
    listed = (await client.get("/v1/prompt-sessions")).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == sid
    assert (await client.get(f"/v1/prompt-sessions/{sid}")).json()["path"] == []
    deleted = await client.delete(f"/v1/prompt-sessions/{sid}")
    assert deleted.status_code == 204
    assert (await client.get(f"/v1/prompt-sessions/{sid}")).status_code == 404
    assert (await client.get(turn["candidates"][0]["image_url"])).status_code == 200  # its jobs stay
    gone = await client.delete(f"/v1/prompt-sessions/{sid}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "prompt_session_not_found"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/prompt-sessions", {"prompt": "  "}, 422, "invalid_parameters"),
        ("/v1/prompt-sessions", {"prompt": ANCHOR, "model": "nope"}, 404, "unknown_model"),
        ("/v1/prompt-sessions/ps-missing/turns", {"instruction": "把圆形换成蓝色"}, 404, "prompt_session_not_found"),
        ("{sid}/turns", {"instruction": "   "}, 422, "invalid_parameters"),
        ("{sid}/turns", {"instruction": "x", "k": 0}, 422, "invalid_parameters"),
        ("{sid}/turns/3/choose", {"index": 0}, 404, "turn_not_found"),
        ("{sid}/turns/1/choose", {"index": 9}, 422, "invalid_parameters"),
        ("{sid}/turns/1/choose", {}, 422, "invalid_parameters"),
        ("{sid}/branch", {"turn": 7}, 404, "turn_not_found"),
    ],
)
async def test_http_bad_input_is_a_clear_4xx_and_loses_nothing(
    client: httpx.AsyncClient, path: str, body: dict[str, object], status: int, code: str
) -> None:
    sid = (await client.post("/v1/prompt-sessions", json={"prompt": ANCHOR})).json()["id"]
    await client.post(f"/v1/prompt-sessions/{sid}/turns", json={"instruction": "把圆形换成蓝色", "k": 1, "steps": 2})
    response = await client.post(path.replace("{sid}", f"/v1/prompt-sessions/{sid}"), json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    stored = (await client.get(f"/v1/prompt-sessions/{sid}")).json()
    assert len(stored["turns"]) == 1 and stored["head"] == 1


@pytest.mark.anyio
async def test_http_undo_at_the_start_and_foreign_sessions(client: httpx.AsyncClient) -> None:
    sid = (await client.post("/v1/prompt-sessions", json={"prompt": ANCHOR})).json()["id"]
    response = await client.post(f"/v1/prompt-sessions/{sid}/undo")
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_parameters"
    assert (await client.get("/v1/prompt-sessions/ps-0000")).status_code == 404


def test_preference_training_from_simulated_users_and_from_picks(data_dir: str) -> None:
    result = CliRunner().invoke(
        cli, ["--data-dir", data_dir, "prompts", "train-preference", "--simulate", "bold", "--turns", "40", "--json"]
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["source"] == "simulated:bold" and report["pairs"] == 120 and Path(report["path"]).is_file()
    with Atelier.open(data_dir=data_dir) as atelier:
        session = atelier.prompts.start(ANCHOR)
        turn = atelier.prompts.turn(session.id, "更精致一些", k=3, seed=2, steps=4)
        assert all(set(c.scores) == {"integrity", "aesthetic", "preference"} for c in turn.candidates)
        atelier.prompts.choose(session.id, 1, index=2)
        picks = train_preference(atelier.container)
        assert picks["source"] == "picks" and picks["pairs"] == 2 and picks["turns"] == 1
    empty = CliRunner().invoke(cli, ["--data-dir", data_dir + "-none", "prompts", "train-preference"])
    assert empty.exit_code == 2 and empty.stderr.startswith("error: No preference pairs")
