"""The studio page: a hand-written page vs a Gradio UI of the same tabs, on cold start and install size.

Each variant runs in a fresh interpreter: import what it needs, build a bare FastAPI app with the UI on it,
and serve the first ``GET /`` through the ASGI test client; the time to that first page is the start-up
cost a deployment pays. Rounds alternate the variants. The Gradio variant builds six tabs with the fields
the studio has (prompt, sizes, steps, sampler, seed, images, chat, knowledge, edits) and mounts them with
``gradio.mount_gradio_app``; it runs where ``--gradio-python`` has Gradio installed (Gradio is not an
Atelier dependency), otherwise only the studio is measured.

    python -m benchmarks.studio [--rounds 5] [--gradio-python /path/to/venv-with-gradio/bin/python]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks._common import emit

ROOT = Path(__file__).resolve().parents[1]

STUDIO = """
import time; t0 = time.perf_counter()
from fastapi import FastAPI
from fastapi.testclient import TestClient
from app.entrypoints.http import studio
app = FastAPI(); studio.install(app)
page = TestClient(app).get("/")
assert page.status_code == 200
print(time.perf_counter() - t0)
"""

GRADIO = """
import time; t0 = time.perf_counter()
from fastapi import FastAPI
from fastapi.testclient import TestClient
import gradio as gr
with gr.Blocks(title="Atelier") as ui:
    for tab in ("文生图", "图生图"):
        with gr.Tab(tab):
            gr.Textbox(label="提示词"); gr.Textbox(label="反向提示词")
            gr.Dropdown(["demo"], label="模型"); gr.Slider(64, 2048, step=8, label="宽度")
            gr.Slider(64, 2048, step=8, label="高度"); gr.Slider(1, 150, label="步数")
            gr.Number(label="引导系数"); gr.Dropdown(["Euler a"], label="采样器"); gr.Number(label="种子")
            if tab == "图生图":
                gr.ImageEditor(label="输入图像"); gr.Radio(["canny", "depth"], label="预处理")
            gr.Button("生成"); gr.Gallery(label="结果")
    with gr.Tab("历史"):
        gr.Gallery(); gr.JSON(); gr.Button("重新生成")
    with gr.Tab("对话改写"):
        gr.Chatbot(); gr.Textbox(label="修改指令"); gr.Checkbox(label="改写提示词"); gr.Gallery()
    with gr.Tab("知识问答"):
        gr.Textbox(label="问题"); gr.Markdown(); gr.File(file_count="multiple"); gr.JSON()
    with gr.Tab("模型编辑"):
        gr.Textbox(label="问题"); gr.Textbox(label="新答案"); gr.Dataframe(); gr.Button("回滚")
app = gr.mount_gradio_app(FastAPI(), ui, path="/")
page = TestClient(app).get("/")
assert page.status_code == 200
print(time.perf_counter() - t0)
"""


def _run(python: str, code: str) -> float:
    env = {"PYTHONPATH": str(ROOT), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin"}
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return float(out.stdout.strip().splitlines()[-1])


def _has_gradio(python: str) -> bool:
    probe = subprocess.run([python, "-c", "import gradio"], capture_output=True, check=False)
    return probe.returncode == 0


def _installed_mb(python: str, names: list[str]) -> float:
    code = (
        "import importlib.metadata as md, json, sys\n"
        "print(sum(f.size or 0 for n in json.loads(sys.argv[1]) for f in (md.distribution(n).files or [])))"
    )
    out = subprocess.run([python, "-c", code, json.dumps(names)], capture_output=True, text=True, check=True)
    return round(int(out.stdout.strip()) / 2**20, 1)


def _gradio_only_packages(python: str) -> list[str]:
    """Distributions installed beside Gradio that Atelier's own environment does not have."""
    listing = (
        "import importlib.metadata as md; "
        "print('\\n'.join(sorted({d.metadata['Name'].lower() for d in md.distributions()})))"
    )
    theirs = subprocess.run([python, "-c", listing], capture_output=True, text=True, check=True).stdout.split()
    ours = subprocess.run([sys.executable, "-c", listing], capture_output=True, text=True, check=True).stdout.split()
    return sorted(set(theirs) - set(ours) - {"pip", "setuptools", "wheel"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--gradio-python", default=sys.executable, help="An interpreter with gradio installed.")
    args = parser.parse_args()
    gradio = _has_gradio(args.gradio_python)
    studio_python = args.gradio_python if gradio else sys.executable  # the same fastapi for both, where possible
    times: dict[str, list[float]] = {"studio": [], "gradio": []}
    for _ in range(args.rounds):
        times["studio"].append(_run(studio_python, STUDIO))
        if gradio:
            times["gradio"].append(_run(args.gradio_python, GRADIO))
    assets = ROOT / "app" / "entrypoints" / "http" / "studio"
    detail: dict[str, Any] = {
        "rounds": args.rounds,
        "first_page_s": {k: [round(v, 3) for v in vs] for k, vs in times.items() if vs},
        "studio_assets_kb": round(sum(f.stat().st_size for f in assets.iterdir()) / 1024, 1),
    }
    headline: dict[str, Any] = {
        "studio_first_page_s": round(statistics.median(times["studio"]), 3),
        "studio_install_mb": round(detail["studio_assets_kb"] / 1024, 2),
    }
    if gradio:
        extra = _gradio_only_packages(args.gradio_python)
        version = subprocess.run(
            [args.gradio_python, "-c", "import gradio; print(gradio.__version__)"], capture_output=True, text=True
        ).stdout.strip()
        detail.update({"gradio_version": version, "gradio_extra_packages": extra})
        headline.update(
            {
                "gradio_first_page_s": round(statistics.median(times["gradio"]), 3),
                "gradio_install_mb": _installed_mb(args.gradio_python, extra),
                "gradio_over_studio_start": round(
                    statistics.median(times["gradio"]) / headline["studio_first_page_s"], 1
                ),
            }
        )
    emit(detail, headline)


if __name__ == "__main__":
    main()
