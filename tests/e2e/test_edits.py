"""Model edits through the CLI (each command a fresh Atelier on SQLite, as separate processes are) and HTTP
(ASGI), on the tiny Llama: the edit is served to knowledge queries, survives a restart, rolls back."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from app.adapters.transformers.tiny import build_tiny_llama
from app.entrypoints.cli.main import cli

pytestmark = pytest.mark.anyio
FRANCE, BOOK = "What is the capital of France?", "Who wrote the book?"


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    llm = build_tiny_llama(str(tmp_path_factory.mktemp("llm") / "tiny"))
    return {"ATELIER_LLM": llm, "ATELIER_EMBEDDER": "hashing"}


def run(env: dict[str, str], data_dir: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def ask(env: dict[str, str], data_dir: Path, question: str) -> str:
    code, out, err = run(env, data_dir, "ask", question, "--retrieval", "never", "--json")
    assert code == 0, err
    answer: str = json.loads(out)["answer"]
    return answer


def test_cli_apply_ask_list_rollback(cli_env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    original = ask(cli_env, data, BOOK)
    code, out, err = run(cli_env, data, "edits", "apply", "--prompt", FRANCE, "--target", "Rome", "--editor", "grace")
    assert code == 0, err
    assert "#1" in out and "rel 1.00" in out
    assert ask(cli_env, data, FRANCE) == "Rome"  # a new process: the edit came from the log and the data dir

    code, out, err = run(
        cli_env,
        data,
        "edits",
        "apply",
        "--prompt",
        BOOK,
        "--target",
        "A painter from the south",
        "--editor",
        "grace",
        "--locality",
        f"{FRANCE}=>Rome",
        "--json",
    )
    assert code == 0, err
    second = json.loads(out)
    assert second["position"] == 2 and second["scores"]["locality"] == 1.0 and second["status"] == "applied"
    assert ask(cli_env, data, BOOK) == "A painter from the south"

    code, out, _ = run(cli_env, data, "edits", "list", "--json")
    listed = json.loads(out)
    assert code == 0 and listed["total"] == 2 and [e["position"] for e in listed["items"]] == [2, 1]
    code, out, _ = run(cli_env, data, "edits", "show", second["id"])
    assert code == 0 and "locality: What is the capital of France? => Rome" in out

    code, out, _ = run(cli_env, data, "edits", "rollback", "1")
    assert code == 0 and "rolled back 1 edits; 1 active" in out
    assert ask(cli_env, data, BOOK) == original
    assert ask(cli_env, data, FRANCE) == "Rome"
    code, _, _ = run(cli_env, data, "edits", "rollback", "0")
    assert code == 0 and ask(cli_env, data, FRANCE) != "Rome"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["edits", "apply", "--prompt", FRANCE, "--target", " "], "target must not be empty"),
        (
            ["edits", "apply", "--prompt", FRANCE, "--target", "Lyon", "--editor", "dafnet"],
            "atelier edits train --editor dafnet",
        ),
        (["edits", "apply", "--prompt", FRANCE, "--target", "Lyon", "--locality", "no arrow"], "PROMPT=>ANSWER"),
        (["edits", "rollback", "1"], "between 0 and 0"),
        (["edits", "show", "nope"], "No such edit"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    cli_env: dict[str, str], tmp_path: Path, args: list[str], message: str
) -> None:
    code, _, err = run(cli_env, tmp_path, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_cli_train_then_edit_and_evaluate_with_dafnet(cli_env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, out, err = run(
        cli_env,
        data,
        "edits",
        "train",
        "--steps",
        "4",
        "--limit",
        "12",
        "--blocks",
        "1",
        "--max-sequence",
        "3",
        "--json",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["steps"] == 4 and summary["training_edits"] == 12
    assert (Path(summary["checkpoint"]) / "networks.safetensors").is_file()
    code, out, err = run(cli_env, data, "edits", "apply", "--prompt", FRANCE, "--target", "Rome", "--editor", "dafnet")
    assert code == 0, err
    code, out, err = run(cli_env, data, "edits", "list", "--json")
    assert [e["editor"] for e in json.loads(out)["items"]] == ["dafnet"]
    code, _, err = run(cli_env, data, "edits", "eval", "-T", "2", "--limit", "4", "--editor", "grace")
    assert code == 2 and "roll back to 0" in err
    code, out, err = run(cli_env, data, "edits", "eval", "-T", "2", "--limit", "4", "--json")
    report = json.loads(out)
    assert code == 0, err
    assert report["chunks"] == 2 and report["scores"]["n"] == 4 and 0.0 <= report["scores"]["locality"] <= 1.0
    code, out, _ = run(cli_env, data, "edits", "list", "--json")
    assert json.loads(out)["total"] == 1  # the evaluation wrote nothing to the log
    # a new run warm-started from those networks, with more data and another locality weight
    warm = ("--steps", "2", "--blocks", "1", "--max-sequence", "3", "--start-sequence", "3", "--loc-weight", "0.6")
    options = (*warm, "--extra-cities", "20", "--init-from", summary["checkpoint"], "--work", str(tmp_path / "warm"))
    code, out, err = run(cli_env, data, "edits", "train", *options, "--json")
    assert code == 0, err
    again = json.loads(out)
    assert again["warm_start"] == summary["checkpoint"] and again["steps"] == 2 and not again["resumed"]
    assert again["curriculum_reached"] == 3 and again["training_edits"] > summary["training_edits"]
    config = json.loads((Path(again["checkpoint"]) / "config.json").read_text(encoding="utf-8"))
    assert config["training"]["loc_weight"] == 0.6 and config["training"]["extra_cities"] == 20


async def test_http_apply_list_ask_rollback(client: httpx.AsyncClient) -> None:
    applied = await client.post("/v1/edits", json={"prompt": FRANCE, "target": "Rome"})
    assert applied.status_code == 201, applied.text
    edit = applied.json()
    assert edit["editor"] == "grace"  # the default: it needs no meta-training
    assert edit["position"] == 1 and edit["scores"]["reliability"] == 1.0
    asked = await client.post("/v1/knowledge/queries", json={"question": FRANCE, "retrieval": "never"})
    assert asked.status_code == 201 and asked.json()["answer"] == "Rome"

    listed = (await client.get("/v1/edits")).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == edit["id"]
    assert (await client.get(f"/v1/edits/{edit['id']}")).json()["spec"]["target"] == "Rome"
    assert len((await client.get("/v1/edits", params={"active": "true"})).json()["items"]) == 1

    rolled = await client.post("/v1/edits/rollback", json={"to": 0})
    assert rolled.status_code == 200 and rolled.json()["rolled_back"][0]["status"] == "rolled_back"
    asked = await client.post("/v1/knowledge/queries", json={"question": FRANCE, "retrieval": "never"})
    assert asked.json()["answer"] != "Rome"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"prompt": FRANCE, "target": ""}, 422, "invalid_parameters"),
        ({"prompt": FRANCE, "target": "Rome", "editor": "rome"}, 422, "invalid_parameters"),
        ({"prompt": FRANCE, "target": "Rome", "editor": "dafnet"}, 409, "editor_not_trained"),
        ({"prompt": FRANCE, "target": "Rome", "extra": 1}, 422, "invalid_parameters"),
    ],
)
async def test_http_bad_edits_get_a_json_error(
    client: httpx.AsyncClient, body: dict[str, object], status: int, code: str
) -> None:
    response = await client.post("/v1/edits", json=body)
    assert response.status_code == status and response.json()["error"]["code"] == code


async def test_http_rollback_out_of_range_and_unknown_edit(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/edits/rollback", json={"to": 1})
    assert response.status_code == 422 and response.json()["error"]["code"] == "rollback_out_of_range"
    response = await client.get("/v1/edits/nope")
    assert response.status_code == 404 and response.json()["error"]["code"] == "edit_not_found"
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {"/v1/edits", "/v1/edits/{edit_id}", "/v1/edits/rollback"} <= set(paths)
