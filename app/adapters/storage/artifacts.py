"""Where trained artifacts live in the data dir: the lab writes them, serving reads them."""

from __future__ import annotations

from pathlib import Path


def sft_dir(data_dir: str) -> Path:
    """The prompt rewriter after supervised fine-tuning (``atelier prompts train-sft``)."""
    return Path(data_dir) / "models" / "rewriter-sft"


def rl_dir(data_dir: str) -> Path:
    """The prompt rewriter after SFT and RL (``atelier prompts train-rl``)."""
    return Path(data_dir) / "models" / "rewriter-rl"


def preference_path(data_dir: str) -> Path:
    """The fitted Bradley-Terry preference reward (``atelier prompts train-preference``)."""
    return Path(data_dir) / "prompts" / "preference.json"
