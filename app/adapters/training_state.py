"""Checkpoints of a training run, shared by the trainers: the trainable weights, the optimizer, the schedule, the
step and random states, written atomically; and results moved into place whole.

A run started again with the same data and settings (its ``fingerprint``) resumes from the checkpoint and reaches
the very weights an uninterrupted run would have; a checkpoint of another run is refused.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from app.domain.errors import InvalidParameters

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(
    work_dir: str,
    fingerprint: dict[str, Any],
    step: int,
    parameters: list[torch.nn.Parameter],
    optimizer: Any,
    schedule: Any,
    generator: torch.Generator | None = None,
) -> None:
    """Write the checkpoint aside and move it in place: a failed write (a full disk) leaves the last one whole."""
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    state = {
        "fingerprint": fingerprint,
        "step": step,
        "parameters": [p.detach().clone() for p in parameters],
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "generator": generator.get_state() if generator is not None else None,
    }
    fd, tmp = tempfile.mkstemp(dir=work_dir, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, Path(work_dir) / CHECKPOINT)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def resume_checkpoint(
    work_dir: str,
    fingerprint: dict[str, Any],
    parameters: list[torch.nn.Parameter],
    optimizer: Any,
    schedule: Any,
    generator: torch.Generator | None = None,
) -> int:
    """Load the checkpoint of ``work_dir`` into the given objects and return its step; 0 when there is none."""
    path = Path(work_dir) / CHECKPOINT
    if not path.is_file():
        return 0
    state = torch.load(path, weights_only=False)
    if state.get("fingerprint") != fingerprint:
        raise InvalidParameters(
            f"The checkpoint in {work_dir} is of another run (other data or settings); start in another folder."
        )
    with torch.no_grad():
        for parameter, saved in zip(parameters, state["parameters"], strict=True):
            parameter.copy_(saved)
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["torch_rng"])
    if generator is not None and state.get("generator") is not None:
        generator.set_state(state["generator"])
    return int(state["step"])


def write_whole(out_dir: str, write: Callable[[Path], None]) -> None:
    """Let ``write`` fill a fresh folder beside ``out_dir``, then put it in ``out_dir``'s place."""
    target = Path(out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(building)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(building, target)
    finally:
        shutil.rmtree(building, ignore_errors=True)
