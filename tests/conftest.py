"""Suite-wide settings: one torch thread (two OpenMP threads on a busy 2-core machine
can be many times slower), and no model-hub access, ever."""

from __future__ import annotations

import os
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
for _var in [v for v in os.environ if v.startswith("ATELIER_") and not v.startswith("ATELIER_TEST_")]:
    del os.environ[_var]  # tests choose their own settings


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """The demo models (``demo``, the shipped trained model; ``demo-tiny``; ControlNets ``canny`` and
    ``depth``; LoRAs ``demo-style-a``/``-b``), built once per test session: name -> (path, kind)."""
    from app.entrypoints.library import Atelier

    with Atelier.open(data_dir=str(tmp_path_factory.mktemp("demo-data")), start_worker=False) as atelier:
        atelier.init_demo()
        return {m.name: (m.path, m.kind.value) for m in atelier.models()}


@pytest.fixture(scope="session")
def demo_model(demo_models: dict[str, tuple[str, str]]) -> str:
    """Path of the tiny random-init Chinese demo pipeline (``demo-tiny``; ``demo`` is the trained one)."""
    return demo_models["demo-tiny"][0]


def register_demo(atelier: Any, demo_models: dict[str, tuple[str, str]]) -> None:
    """Register the session's demo models in another data dir, without rebuilding them."""
    for name, (path, kind) in demo_models.items():
        atelier.add_model(name, path, kind=kind, replace=True)


@pytest.fixture(scope="session")
def smollm2_folder(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SmolLM2-135M-Instruct converted from its package's GGUF once per test session (the conversion itself is
    tested in tests/integration/test_transformers_llm.py)."""
    from app.adapters.transformers.smollm2 import smollm2_path

    return smollm2_path(str(tmp_path_factory.mktemp("smollm2")))


def seed_smollm2(data_dir: Any, folder: str) -> None:
    """A data dir as after its first use of SmolLM2: the converted folder in place (linked, read only)."""
    from pathlib import Path

    from app.adapters.transformers.smollm2 import FOLDER

    target = Path(data_dir) / "models" / "llm" / FOLDER
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(folder)
