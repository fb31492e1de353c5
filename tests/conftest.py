"""Suite-wide settings: one torch thread (two OpenMP threads on a busy 2-core machine
can be many times slower), and no model-hub access, ever."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
for _var in [v for v in os.environ if v.startswith("ATELIER_") and not v.startswith("ATELIER_TEST_")]:
    del os.environ[_var]  # tests choose their own settings


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny random-init Chinese demo pipeline, built once per test session."""
    from app.container import build_demo

    return build_demo(str(Path(tmp_path_factory.mktemp("models")) / "demo"), 0)
