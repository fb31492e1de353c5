"""Training the demo world's text-to-image model against a composed Atelier: resumable in a work
folder, exported as a diffusers folder, optionally registered in the model catalog."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.composition import Container
from app.domain.models import ModelKind

Progress = Callable[[str, int, int, dict[str, float]], None]


def train_demo(
    container: Container,
    out_dir: str | None = None,
    work_dir: str | None = None,
    progress: Progress | None = None,
    restart: bool = False,
    register: str | None = None,
    **config: Any,
) -> dict[str, Any]:
    """Train from scratch (an interrupted run continues from its last checkpoint in ``work_dir``) and write
    the model to ``out_dir`` (default ``<data dir>/models/demo-trained``); ``register`` adds it to the
    registry under that name. ``config`` overrides ``TrainConfig`` fields (``unet_steps``, ``seed``, ...)."""
    from app.lab.demo_world.config import TrainConfig
    from app.lab.demo_world.train import Trainer, checker_gate

    data = Path(container.settings().data_dir)
    out = out_dir or str(data / "models" / "demo-trained")
    work = work_dir or str(data / "training" / "demo-world")
    if restart:
        shutil.rmtree(work, ignore_errors=True)
    trainer = Trainer(work, TrainConfig(**config), progress or (lambda *_: None))
    trainer.run(until="export", out_dir=out, gate=checker_gate)
    if register:
        container.catalog().add(register, out, kind=ModelKind.BASE, replace=True)
    return {"path": out, "train_minutes": round(trainer.train_minutes, 1), "stages": trainer.state["seconds"]}
