"""The CLI through Click's runner against the local profile: SQLite, real tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from app.entrypoints.cli.main import cli


def run(data_dir: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--data-dir", data_dir, *args])
    return result.exit_code, result.stdout, result.stderr


def test_generate_saves_pngs_and_records_the_job(data_dir: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, stdout, _ = run(
        data_dir,
        "generate",
        "一只猫在草地上",
        "--size",
        "64x64",
        "--steps",
        "2",
        "--seed",
        "7",
        "--n",  # the first spelling of --num-images, still accepted
        "2",
        "--scheduler",
        "euler_a",
        "--out",
        str(out),
        "--json",
    )
    assert code == 0, stdout
    job = json.loads(stdout)
    assert job["status"] == "succeeded" and job["seed"] == 7
    assert job["params"]["scheduler"] == "Euler a"
    paths = [Path(i["path"]) for i in job["images"]]
    assert [p.parent for p in paths] == [out, out]
    picture = Image.open(paths[1])
    assert picture.size == (64, 64) and "Seed: 8" in picture.info["parameters"]

    code, stdout, _ = run(data_dir, "jobs", "list", "--json")
    assert code == 0 and json.loads(stdout)["items"][0]["id"] == job["id"]
    code, stdout, _ = run(data_dir, "jobs", "show", job["id"])
    assert code == 0 and "prompt: 一只猫在草地上" in stdout and "image " in stdout

    code, _, stderr = run(data_dir, "jobs", "cancel", job["id"])
    assert code == 2 and stderr.strip().splitlines() == [f"error: Job {job['id']} is already succeeded."]


def test_plain_output_lists_the_image_paths(data_dir: str, tmp_path: Path) -> None:
    code, stdout, _ = run(data_dir, "generate", "红色的圆", "--size", "64x64", "--steps", "1", "--out", str(tmp_path))
    assert code == 0
    lines = stdout.strip().splitlines()
    assert lines[0].startswith("job ") and "succeeded" in lines[0]
    assert Path(lines[1]).is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "猫", "--size", "100x64"], "error: width must be a multiple of 8, got 100."),
        (["generate", "猫", "--size", "huge"], "error: Size 'huge' is not WIDTHxHEIGHT, e.g. 512x512."),
        (["generate", "", "--steps", "2"], "error: The prompt is empty."),
        (["generate", "猫", "--model", "nope"], "error: No model named 'nope' is registered."),
        (["generate", "猫", "--scheduler", "warp"], "error: Unknown scheduler 'warp'"),
        (["jobs", "show", "0" * 32], "error: No job"),
        (["jobs", "cancel", "nope"], "error: No job"),
        (["models", "add", "x", "/definitely/not/here"], "error: '/definitely/not/here' is neither"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(data_dir: str, args: list[str], message: str) -> None:
    code, stdout, stderr = run(data_dir, *args)
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and stderr.startswith(message), stderr
    assert "Traceback" not in stdout + stderr


def test_models_add_list_and_offline_hub_ids(data_dir: str, demo_model: str) -> None:
    code, stdout, _ = run(data_dir, "models", "add", "second", demo_model)
    assert code == 0 and "64px" in stdout and "bert" in stdout
    code, stdout, _ = run(data_dir, "models", "list", "--json")
    assert [m["name"] for m in json.loads(stdout)] == [
        "canny",
        "demo",
        "demo-style-a",
        "demo-style-b",
        "demo-tiny",
        "depth",
        "second",
    ]
    code, _, stderr = run(data_dir, "models", "add", "second", demo_model)
    assert code == 2 and "already registered" in stderr
    code, _, stderr = run(data_dir, "models", "add", "hub", "alibaba-pai/pai-diffusion-artist-large-zh")
    assert code == 3 and "Without a network" in stderr and len(stderr.strip().splitlines()) == 1


def test_db_upgrade_is_idempotent(tmp_path: Path) -> None:
    for _ in range(2):
        code, stdout, _ = run(str(tmp_path), "db", "upgrade")
        assert code == 0 and "newest revision" in stdout


def test_unreachable_database_is_exit_3(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--data-dir", str(tmp_path), "--database-url", "postgresql+psycopg://u:p@127.0.0.1:1/x", "jobs", "list"]
    )
    assert result.exit_code == 3 and result.stderr.startswith("error: The database is unavailable")


def test_help_and_import_do_not_load_torch() -> None:
    probe = (
        "import sys\n"
        "import app, app.composition, app.entrypoints.library, app.entrypoints.http.app\n"
        "from click.testing import CliRunner\n"
        "from app.entrypoints.cli.main import cli\n"
        "for args in (['--help'], ['generate', '--help'], ['jobs', '--help'], ['models', 'add', '--help']):\n"
        "    assert CliRunner().invoke(cli, args).exit_code == 0\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers', 'peft') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
    help_text = CliRunner().invoke(cli, ["generate", "--help"]).stdout
    for option in [
        "--negative",
        "--model",
        "--size",
        "--steps",
        "--guidance",
        "--seed",
        "--num-images",
        "--scheduler",
        "--out",
        "--json",
    ]:
        assert option in help_text


def test_every_mode_from_the_command_line(data_dir: str, tmp_path: Path) -> None:
    photo, hole = tmp_path / "photo.png", tmp_path / "mask.png"
    Image.new("RGB", (64, 64), "red").save(photo)
    Image.new("L", (64, 64), 255).save(hole)
    cases = {
        "img2img": ["--init-image", str(photo), "--strength", "0.5", "--resize-mode", "crop"],
        "inpaint": ["--init-image", str(photo), "--mask", str(hole)],
        "outpaint": ["--init-image", str(photo), "--outpaint", "16,0,0,8", "--outpaint-fill", "reflect"],
        "controlnet": ["--control", f"canny:{photo}", "--control-scale", "0.5"],
    }
    for mode, options in cases.items():
        args = ["generate", "猫", "--steps", "1", "--out", str(tmp_path), "--json", *options]
        code, stdout, stderr = run(data_dir, *args)
        assert code == 0, stderr
        job = json.loads(stdout)
        assert job["status"] == "succeeded" and job["params"]["mode"] == mode
    assert [(unit["model"], unit["scale"]) for unit in job["params"]["controls"]] == [("canny", 0.5)]
    two = [
        "--control",
        f"canny:{photo}",
        "--control",
        f"depth:{photo}",
        "--control-scale",
        "0.5",
        "--control-scale",
        "1",
    ]
    code, stdout, stderr = run(data_dir, "generate", "猫", "--steps", "1", "--out", str(tmp_path), "--json", *two)
    assert code == 0, stderr
    units = json.loads(stdout)["params"]["controls"]
    assert [(unit["kind"], unit["model"], unit["scale"]) for unit in units] == [
        ("canny", "canny", 0.5),
        ("depth", "depth", 1),
    ]
    three_scales = [*two, "--control-scale", "0.2"]
    code, _, stderr = run(data_dir, "generate", "猫", *three_scales)
    assert code == 2 and "once per --control (2)" in stderr
    code, _, stderr = run(data_dir, "generate", "猫", "--control", "canny")
    assert code == 2 and "KIND:IMAGE" in stderr
    code, _, stderr = run(data_dir, "generate", "猫", "--mask", str(hole))
    assert code == 2 and stderr.startswith("error: Mode inpaint needs init_image.")
    code, stdout, _ = run(data_dir, "models", "list", "--kind", "controlnet")
    assert code == 0 and [line.split()[0] for line in stdout.splitlines()] == ["NAME", "canny", "depth"]


def test_jobs_are_deleted_and_pruned_from_the_command_line(data_dir: str, tmp_path: Path) -> None:
    ids = []
    for _ in range(2):
        code, stdout, stderr = run(data_dir, "generate", "猫", "--steps", "1", "--out", str(tmp_path), "--json")
        assert code == 0, stderr
        ids.append(json.loads(stdout)["id"])
    code, stdout, _ = run(data_dir, "jobs", "delete", ids[0])
    assert code == 0 and stdout.strip() == f"job {ids[0]}: deleted"
    code, _, stderr = run(data_dir, "jobs", "show", ids[0])
    assert code != 0 and "No job" in stderr
    code, _, stderr = run(data_dir, "jobs", "prune")
    assert code == 2 and "--older-than" in stderr
    code, stdout, _ = run(data_dir, "jobs", "prune", "--older-than", "0.000000001")
    assert code == 0 and stdout.strip().endswith("finished jobs deleted") and int(stdout.split()[0]) >= 1
    code, _, _ = run(data_dir, "jobs", "show", ids[1])
    assert code != 0


def test_a_model_is_removed_from_the_command_line(data_dir: str) -> None:
    code, stdout, _ = run(data_dir, "models", "remove", "depth")
    assert code == 0 and stdout.strip() == "removed depth (controlnet)"
    code, stdout, _ = run(data_dir, "models", "list", "--kind", "controlnet")
    assert [line.split()[0] for line in stdout.splitlines()] == ["NAME", "canny"]
    code, _, stderr = run(data_dir, "models", "remove", "depth")
    assert code != 0 and "No model named 'depth'" in stderr


def test_cluster_status_lists_the_live_processes_their_models_and_the_queue(data_dir: str, tmp_path: Path) -> None:
    from app.entrypoints.library import Atelier

    runner = Atelier.open(data_dir=data_dir, worker_heartbeat=0.2)
    idle = Atelier.open(data_dir=data_dir, worker_heartbeat=0.2, recover=False)
    try:
        assert runner.generate("猫", steps=1, model="demo-tiny").status.value == "succeeded"
        waiting = Atelier.open(data_dir=data_dir, start_worker=False)
        queued = waiting.submit("狗", steps=1, model="demo")  # no worker of this process will take it
        time.sleep(0.6)
        code, stdout, _ = run(data_dir, "cluster", "status", "--json")
        assert code == 0
        status = json.loads(stdout)
        workers = {w["id"]: w for w in status["workers"]}
        assert set(workers) >= {runner.worker_id, idle.worker_id}
        assert workers[runner.worker_id]["models"] == ["demo-tiny"] and workers[idle.worker_id]["models"] == []
        assert workers[runner.worker_id]["threads"] >= 1 and workers[runner.worker_id]["seen_seconds_ago"] < 1
        [line] = status["queue"]
        assert (line["model"], line["queued"]) == ("demo", 1) and line["oldest_wait_seconds"] >= 0
        waiting.cancel(queued.id)
        waiting.close()
    finally:
        idle.close()
        runner.close()
    code, stdout, stderr = run(data_dir, "cluster", "status")
    assert code == 0 and stdout.splitlines()[0].split()[:3] == ["WORKER", "HOST", "PID"]
    assert "0 live workers" in stderr  # both closed: their rows are gone
