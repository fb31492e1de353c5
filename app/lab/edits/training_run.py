"""``atelier edits train``: meta-train DAFNet or MEND for the served model and install the checkpoint.

Data: the DAFSet-style training split built from geonames (popular, long-tail and robust subsets,
counterfactual targets; ``extra_cities`` more city edits when asked) and its plain-text passages for
the locality KL. Checkpoints every ``checkpoint_every`` steps in the work folder; a run started again
with the same settings resumes where it stopped, and one started with more steps or another
curriculum cap extends it; ``init_from`` starts a new run from trained networks. The result goes to
``<data dir>/edits/networks/<model>/<editor>/``, where the editor pool looks for it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.adapters.editing.dafnet import checkpoint_dir
from app.adapters.editing.network import NetworkConfig
from app.adapters.editing.pool import model_slug, networks_dir
from app.composition import Container
from app.domain.errors import InvalidParameters
from app.lab.edits.train import EditTrainConfig, EditTrainer

CHECKPOINT = "checkpoint.pt"


def build_config(editor: str, overrides: dict[str, Any]) -> EditTrainConfig:
    network = {k.removeprefix("network_"): v for k, v in overrides.items() if k.startswith("network_")}
    rest = {k: v for k, v in overrides.items() if not k.startswith("network_") and v is not None}
    try:
        return EditTrainConfig(editor=editor, network=NetworkConfig(**network), **rest)
    except TypeError as e:
        raise InvalidParameters(f"Unknown training setting: {e}", field="config") from e


def train_editor(
    lm: Any,
    data_dir: str,
    editor: str,
    *,
    work_dir: str | None = None,
    restart: bool = False,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    limit: int | None = None,
    seed: int = 0,
    init_from: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train, export and return a summary (steps, minutes, final losses, where the checkpoint went).

    ``init_from``: an exported checkpoint folder whose networks start a new run (a warm start; ignored
    when the work folder holds a run to resume)."""
    from app.lab.edits.dafset import build_edits, plain_text

    config = build_config(editor, {"seed": seed, **overrides})
    records = build_edits(seed, extra_cities=config.extra_cities)
    train = [r.to_spec() for rs in records.values() for r in rs if r.split == "train"]
    if limit is not None:
        train = train[:limit]
    work = Path(work_dir or Path(data_dir) / "training" / f"edits-{editor}-{model_slug(lm.name)}")
    if restart and work.exists():
        shutil.rmtree(work)
    trainer = EditTrainer(lm, train, plain_text(seed), config)
    try:
        resumed = trainer.load_checkpoint(work / CHECKPOINT)
        warm = None
        if not resumed and init_from:
            trainer.warm_start(init_from)
            warm = str(init_from)
        every = max(1, config.checkpoint_every)

        def step(done: int, total: int, info: dict[str, float]) -> None:
            if done % every == 0 or done == total:
                trainer.save_checkpoint(work / CHECKPOINT)
            if progress is not None:
                progress(done, total, info)

        trainer.run(step)
        out = checkpoint_dir(str(networks_dir(data_dir)), model_slug(lm.name), editor)
        trainer.export(out)
        last = trainer.history[-1] if trainer.history else {}
        return {
            "editor": editor,
            "model": lm.name,
            "steps": trainer.step,
            "resumed": resumed,
            "warm_start": warm,
            "train_minutes": round(trainer.seconds / 60, 2),
            "curriculum_reached": trainer.curriculum,
            "training_edits": len(train),
            "last": last,
            "checkpoint": str(out),
        }
    finally:
        trainer.close()


def train_served_editor(
    container: Container,
    editor: str = "dafnet",
    *,
    work_dir: str | None = None,
    restart: bool = False,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    **config: Any,
) -> dict[str, Any]:
    """Meta-train DAFNet (or MEND) for the served model. Meta-training needs the original model, so the
    edit log's edits are taken off first and put back afterwards (also when training fails)."""
    pool = container.editor_pool()
    pool.reset()
    try:
        summary: dict[str, Any] = train_editor(
            container.llm(),
            container.settings().data_dir,
            editor,
            work_dir=work_dir,
            restart=restart,
            progress=progress,
            **config,
        )
    finally:
        container.restore_edits()()
    return summary
