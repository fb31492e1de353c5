"""The command line as a new user meets it: where `serve` says it serves, progress on and off a terminal,
closed pipes, column headers, one meaning per option name, command names and the grouped help."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from app.entrypoints.cli import common
from app.entrypoints.cli.chat import rewrite
from app.entrypoints.cli.common import Progress, progress_bar
from app.entrypoints.cli.generate import generate
from app.entrypoints.cli.knowledge import evaluate as knowledge_eval
from app.entrypoints.cli.main import ALIASES, COMMANDS, SECTIONS, cli, main
from app.entrypoints.library import Atelier

ROOT = Path(__file__).resolve().parents[2]
CAPTION = "一个红色的圆形在中间"


def run(data_dir: str, *args: str, **kwargs: Any) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--data-dir", data_dir, *args], **kwargs)
    return result.exit_code, result.stdout, result.stderr


def environment(data_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATELIER_")}
    return {**env, "ATELIER_DATA_DIR": data_dir}


def shell(pipeline: str, data_dir: str) -> subprocess.CompletedProcess[str]:
    """``pipeline`` under ``bash -o pipefail``, with ``atelier`` this checkout's CLI."""
    define = f'atelier() {{ "{sys.executable}" -m app.entrypoints.cli.main "$@"; }}\n'
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", define + pipeline],
        cwd=ROOT,
        env=environment(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def queued_job(data_dir: str) -> str:
    """A job left queued (no worker runs in this data dir): listed and shown without generating."""
    with Atelier.open(data_dir=data_dir, start_worker=False) as atelier:
        return atelier.submit(CAPTION, steps=2, width=64, height=64).id


# -- 1. `atelier serve` says where it serves; `make run` leaves ATELIER_HOST/PORT to it ------------------------


def test_serve_prints_its_url_and_data_dir_and_honours_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    import app.entrypoints.http.app as http_app

    served: list[tuple[str, int]] = []
    opened: list[Atelier] = []

    def create_app(atelier: Atelier, close_on_shutdown: bool | None = None) -> object:
        opened.append(atelier)
        return object()

    monkeypatch.setattr(http_app, "create_app", create_app)

    def run(app: object, host: str, port: int, log_level: str, **options: object) -> None:
        assert options == {"log_config": None, "access_log": True}  # plain logs: uvicorn's access lines stay
        served.append((host, port))

    monkeypatch.setattr(uvicorn, "run", run)
    env = {"ATELIER_HOST": "127.0.0.2", "ATELIER_PORT": "8765"}
    try:
        from_env = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "serve"], env=env)
        given = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "serve", "--port", "9001"], env=env)
    finally:
        for atelier in opened:
            atelier.close()
    assert from_env.exit_code == 0 and given.exit_code == 0, from_env.output + given.output
    assert served == [("127.0.0.2", 8765), ("127.0.0.2", 9001)]
    assert from_env.stderr.splitlines()[0] == (
        f"Atelier serving http://127.0.0.2:8765 — data dir {tmp_path.resolve()} (SQLite); "
        "the studio at /, API docs at /docs"
    )
    assert given.stderr.startswith("Atelier serving http://127.0.0.2:9001 — data dir ")


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_passes_host_and_port_only_when_they_are_given() -> None:
    base = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}

    def serve_options(*args: str, **env: str) -> str:
        out = subprocess.run(
            ["make", "-n", "run", *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, check=True
        ).stdout
        line = [line for line in out.splitlines() if "atelier serve" in line][-1]
        return line.split("atelier serve", 1)[1].strip()

    assert serve_options() == ""  # `atelier serve` picks ATELIER_HOST/ATELIER_PORT, else 127.0.0.1:8000
    assert serve_options(ATELIER_PORT="9100") == ""
    assert serve_options("PORT=9100") == "--port 9100"
    assert serve_options("HOST=0.0.0.0", "PORT=9100") == "--host 0.0.0.0 --port 9100"
    assert serve_options(PORT="9101") == "--port 9101"


# -- 2. progress: a bar counting steps on a terminal, one line elsewhere, nothing with --quiet ------------------


def test_generate_off_a_terminal_prints_one_line_and_nothing_with_quiet(data_dir: str, tmp_path: Path) -> None:
    args = ["generate", CAPTION, "--size", "64x64", "--steps", "2", "--out", str(tmp_path)]
    code, stdout, stderr = run(data_dir, *args)
    assert code == 0 and stdout.startswith("job ")
    assert "\r" not in stderr
    assert re.fullmatch(r"generating: 2/2 steps in \d+\.\d s( \(\d+\.\d\d it/s\))?\n", stderr), stderr
    code, stdout, stderr = run(data_dir, *args, "--quiet")
    assert code == 0 and stdout.startswith("job ") and stderr == ""


def test_progress_counts_work_with_its_rate_and_redraws_only_on_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "_stderr_is_terminal", lambda: True)
    with progress_bar("training", quiet=False, unit="steps") as update:
        for step in range(1, 31):
            update(step, 30, {"loss": 0.25})
            time.sleep(0.02)  # a redraw every 0.1 s
    err = capsys.readouterr().err
    assert err.count("\r") > 2 and re.search(r"\| [1-9]\d*/30 steps \[.*\d it/s, loss=0\.25\]", err), err
    assert "%/s" not in err

    monkeypatch.setattr(common, "_stderr_is_terminal", lambda: False)
    with progress_bar("training", quiet=False, unit="steps") as update:
        for step in range(101, 151):  # a resumed run: its rate counts this run's steps only
            update(step, 150, {"loss": 0.25})
            time.sleep(0.001)
    err = capsys.readouterr().err
    assert "\r" not in err and err.count("\n") == 1
    assert re.fullmatch(r"training: 150/150 steps in \d+\.\d s \(\d+\.\d\d it/s, loss=0\.25\)\n", err), err

    with progress_bar("training", quiet=True, unit="steps") as update:
        update(1, 2)
    with pytest.raises(RuntimeError), progress_bar("training", quiet=False) as update:
        update(1, 2)
        raise RuntimeError("the work failed: no summary line")
    assert capsys.readouterr().err == ""


def test_progress_stays_on_stderr_and_is_quiet_when_told(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress("x", "steps", quiet=True)
    progress.update(1, 1)
    progress.finish()
    progress.close()
    assert capsys.readouterr() == ("", "")


def test_generate_on_a_terminal_shows_a_bar_counting_denoising_steps(data_dir: str, tmp_path: Path) -> None:
    args = [sys.executable, "-m", "app.entrypoints.cli.main", "generate", CAPTION, "--steps", "3"]
    terminal, stdout = on_a_terminal([*args, "--size", "64x64", "--out", str(tmp_path)], environment(data_dir))
    assert stdout.startswith("job ") and "succeeded" in stdout
    assert "\r" in terminal and "/3 steps [" in terminal and " it/s" in terminal, terminal
    assert "%/s" not in terminal


def on_a_terminal(args: list[str], env: dict[str, str], timeout: float = 300) -> tuple[str, str]:
    """Run ``args`` with stderr on a pseudo-terminal (120 columns); return what it drew there, and stdout."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 1.0)[0]:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.stdout is not None
        stdout = proc.stdout.read().decode()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return b"".join(chunks).decode(errors="replace"), stdout


def test_off_a_terminal_the_libraries_progress_bars_are_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "environ", {})
    monkeypatch.setattr(sys, "argv", ["atelier", "--version"])
    with pytest.raises(SystemExit):
        main()
    assert os.environ == {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


# -- 3. a closed pipe ends the command quietly --------------------------------------------------------------


@pytest.mark.parametrize(
    "pipeline",
    [
        "atelier jobs show {job} | head -1",
        "atelier jobs list | head -1",
        "atelier jobs show {job} | true",  # the reader is gone before the first line is written
        "atelier jobs list | true",
        "atelier scenes sample --count 30000 | head -1",  # more than a pipe holds
        "atelier --help | true",
        "atelier jobs --help | true",
    ],
)
def test_a_closed_pipe_ends_quietly(data_dir: str, queued_job: str, pipeline: str) -> None:
    result = shell(pipeline.format(job=queued_job), data_dir)
    assert result.returncode == 0, result.stderr
    # `jobs list` writes its count to stderr once every row is written
    assert result.stderr in ("", "1 of 1 jobs\n"), result.stderr
    if "head -1" in pipeline:
        first = result.stdout.splitlines()
        assert len(first) == 1
        if "jobs show" in pipeline:
            assert first[0].startswith(queued_job)
        elif "jobs list" in pipeline:
            assert first[0].split()[:2] == ["ID", "STATUS"]


def test_a_broken_pipe_of_another_kind_is_still_an_error(data_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def lost(*args: Any, **kwargs: Any) -> None:
        raise BrokenPipeError(32, "Broken pipe")  # a worker's or a socket's, not the reader of our output

    monkeypatch.setattr(Atelier, "jobs", lost)
    code, _, err = run(data_dir, "jobs", "list")
    assert code == 1 and err.startswith("error: internal error (BrokenPipeError")


# -- 4. list commands name their columns --------------------------------------------------------------------


def test_list_commands_print_a_header_row_unless_json(data_dir: str, queued_job: str) -> None:
    headers = {
        ("jobs", "list"): "ID STATUS PROGRESS CREATED MODEL SIZE PROMPT",
        ("models", "list"): "NAME KIND FAMILY SIZE TOKENIZER SOURCE",
        ("prompts", "list"): "ID UPDATED TURNS CURRENT PROMPT",
        ("knowledge", "list"): "ID DECISION SECONDS QUESTION",
        ("edits", "list", "--all-models"): "ID # STATUS EDITOR REL GEN LOC PROMPT -> TARGET",
    }
    for args, header in headers.items():
        code, out, err = run(data_dir, *args)
        assert code == 0, err
        assert out.splitlines()[0].split() == header.split(), args
        code, out, err = run(data_dir, *args, "--json")
        assert code == 0 and json.loads(out) is not None, args

    code, out, _ = run(data_dir, "jobs", "list")
    top, row = out.splitlines()[:2]
    assert row.startswith(queued_job) and "queued" in row
    assert row.index("queued") == top.index("STATUS") and row.index("demo") == top.index("MODEL")
    assert row.rstrip().endswith(CAPTION)


# -- 5. one meaning per option name -------------------------------------------------------------------------


def visible_options() -> list[tuple[str, list[str], str]]:
    """(command path, option names shown in --help, help text) of every command."""
    found: list[tuple[str, list[str], str]] = []

    def walk(command: click.Command, path: str) -> None:
        ctx = click.Context(command, info_name=path)
        for param in command.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record:
                names = [part.split(" ")[0] for part in record[0].split(", ")]
                found.append((path, names, record[1]))
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                walk(sub, f"{path} {name}")

    walk(cli, "atelier")
    return found


def test_no_command_shows_an_option_spelled_n() -> None:
    """-n/--n counted images, rewrites and captions: now --num-images, --rewrites and --count."""
    shown = {name for _, names, _ in visible_options() for name in names}
    assert "-n" not in shown and "--n" not in shown
    assert {"--num-images", "--rewrites", "--count", "--retrieval"} <= shown


def test_each_short_option_means_one_thing() -> None:
    meanings: dict[str, set[str]] = {}
    for _, names, _ in visible_options():
        longs = [n for n in names if n.startswith("--")]
        for short in (n for n in names if not n.startswith("--")):
            meanings.setdefault(short, set()).update(longs)
    assert {short: longs for short, longs in meanings.items() if len(longs) > 1} == {}


def test_the_old_spellings_still_work(data_dir: str) -> None:
    assert generate.make_context("generate", [CAPTION, "--n", "2"]).params["num_images"] == 2
    assert generate.make_context("generate", [CAPTION, "--num-images", "3"]).params["num_images"] == 3
    assert rewrite.make_context("rewrite", [CAPTION, "-n", "3"]).params["n"] == 3
    assert rewrite.make_context("rewrite", [CAPTION, "--rewrites", "5"]).params["n"] == 5
    modes = knowledge_eval.make_context("eval", ["q.jsonl", "--mode", "never", "--retrieval", "auto"]).params["modes"]
    assert modes == ("never", "auto")
    for option, count in (("-n", 2), ("--count", 3)):
        code, out, _ = run(data_dir, "scenes", "sample", option, str(count), "--seed", "1")
        assert code == 0 and len(out.splitlines()) == count


# -- 6. and 7. command names and the grouped help -----------------------------------------------------------


def test_rewrite_runs_prompt_sessions_and_chat_is_its_hidden_alias(data_dir: str) -> None:
    for name in ("rewrite", "chat"):
        code, out, err = run(data_dir, name, CAPTION, "--json", input=":quit\n")
        assert code == 0, err
        assert json.loads(out.splitlines()[0])["current_prompt"] == CAPTION
    top = CliRunner().invoke(cli, ["--help"]).stdout
    assert re.search(r"^  rewrite +Rewrite an image prompt", top, re.M)
    assert not re.search(r"^  chat\b", top, re.M)
    alias_help = " ".join(CliRunner().invoke(cli, ["chat", "--help"]).stdout.split())
    assert "Rewrite the image prompt PROMPT" in alias_help and "Not a chat with the language model" in alias_help
    assert ALIASES == {"chat": "rewrite"}


def test_help_names_the_four_capabilities_and_groups_the_commands_by_them() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    description = " ".join(result.stdout.split("Options:")[0].split())
    assert "image generation, prompt sessions, knowledge queries and model edits" in description
    sections: dict[str, list[str]] = {}
    title = None
    for line in result.stdout.split("Options:")[1].splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            title = line[:-1]
            sections[title] = []
        elif title and re.match(r"^  \S", line):
            sections[title].append(line.split()[0])
    assert sections == {title: list(commands) for title, commands in SECTIONS}
    assert list(sections)[:4] == ["Image generation", "Prompt sessions", "Knowledge queries", "Model edits"]
    assert sorted(name for names in sections.values() for name in names) == sorted(COMMANDS)
