"""Training runs of prompt sessions against a composed Atelier: the preference reward from picks (or a
simulated user), the rewriter's SFT, and its RL with the turns' rewards. Each resets the provider it
replaces, so the next turn serves the new model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from app.adapters.storage.artifacts import preference_path, rl_dir, sft_dir
from app.composition import Container
from app.domain.errors import ModelUnavailable
from app.domain.prompt_sessions import ScoreItem

Progress = Callable[[int, int, dict[str, float]], None]


def train_preference(
    container: Container, *, simulate: str | None = None, turns: int = 200, k: int = 4, seed: int = 0
) -> dict[str, Any]:
    """Fit the Bradley–Terry preference reward on the picks stored in sessions, or on ``turns`` turns of
    a simulated demo-world user with the taste ``simulate`` (styled, bold, dark). Turns score it from then on."""
    from app.lab.prompts.preference import simulated_turn_pairs, stored_turn_pairs
    from app.lab.prompts.preference import train_preference as fit

    reader = container.scene_reader()
    if simulate is not None:
        groups = simulated_turn_pairs(simulate, turns, k, reader, seed)
        source = f"simulated:{simulate}"
    else:
        groups = stored_turn_pairs(container.prompt_sessions(), container.images(), reader)
        source = "picks"
    path = preference_path(container.settings().data_dir)
    report: dict[str, Any] = fit(groups, path, source, seed)
    container.prompt_rewards.reset()  # the next turn loads the new model
    return {**report, "path": str(path)}


def train_sft(
    container: Container, *, data: str | None = None, progress: Progress | None = None, **config: Any
) -> dict[str, Any]:
    """Train the demo world's Chinese rewriter (``SftConfig`` fields in ``config``) on generated
    InstructPE-format records, or on the InstructPE JSON at ``data``; serve it with ``prompt_rewriter="sft"``."""
    from app.lab.prompts.sft import SftConfig, load_instructpe
    from app.lab.prompts.sft import train_sft as fit

    records = load_instructpe(data) if data else None
    folder = sft_dir(container.settings().data_dir)
    summary: dict[str, Any] = fit(folder, SftConfig(**config), records, progress)
    container.prompt_rewriter.reset()
    return {**summary, "path": str(folder)}


def train_rl(
    container: Container,
    *,
    model: str = "demo",
    data: str | None = None,
    out_dir: str | None = None,
    progress: Progress | None = None,
    **config: Any,
) -> dict[str, Any]:
    """PPO on the SFT rewriter (``train_sft`` first) with the turns' combined reward of images drawn by
    ``model``, with action-space dynamic modification and the content-integrity state value (``RlConfig``
    fields in ``config``); serve it with ``prompt_rewriter="sft_rl"``. ``out_dir`` writes it elsewhere
    than the served folder (for comparing settings). ``reward="text"`` (an ``RlConfig`` field) replaces
    the renders by the integrity of the rewrite's own text (``text_integrity``): no render noise and no
    image model, the most the reward can tell PPO about the content."""
    from app.adapters.rewards.integrity import text_integrity_scores
    from app.lab.prompts.rl import RlConfig
    from app.lab.prompts.rl import train_rl as fit
    from app.lab.prompts.sft import load_instructpe

    settings = RlConfig(**config)
    records = load_instructpe(data) if data else None
    data_dir = container.settings().data_dir
    folder = Path(out_dir) if out_dir else rl_dir(data_dir)
    sft = sft_dir(data_dir)
    if not (sft / "config.json").is_file():
        raise ModelUnavailable("The SFT rewriter is not trained: run `atelier prompts train-sft` first.")
    container.catalog().get(model)  # an unknown model fails before any training
    scorer = container.score_prompts()

    def score(items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        if settings.reward == "text":
            return text_integrity_scores(items)
        return scorer(items, model=model, steps=settings.render_steps)

    summary: dict[str, Any] = fit(sft, folder, score, settings, records, progress)
    container.prompt_rewriter.reset()
    return {**summary, "path": str(folder)}
