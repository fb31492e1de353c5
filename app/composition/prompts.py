"""Typed factories of prompt sessions: the rewriter and the rewards that rank a turn's candidates."""

from __future__ import annotations

from pathlib import Path

from app.composition.generation import pick_device
from app.domain.errors import ModelUnavailable
from app.ports.prompt_sessions import PromptRewriter, RewardModel
from app.ports.scenes import SceneReader
from app.settings import Settings


def prompt_rewriter(settings: Settings) -> PromptRewriter:
    """``rule`` (the demo world's rules), ``concat``, ``sft`` / ``sft_rl`` (the demo world's trained rewriter,
    after SFT / after SFT and RL), ``smollm2`` (its own copy, never the edited knowledge LLM) or a causal-LM
    folder / hub id."""
    from app.adapters.rewriting.rules import ConcatPromptRewriter, RulePromptRewriter

    name = settings.prompt_rewriter
    if name == "rule":
        return RulePromptRewriter()
    if name == "concat":
        return ConcatPromptRewriter()
    from app.adapters.rewriting.causal_lm import TransformersPromptRewriter
    from app.adapters.storage.artifacts import rl_dir, sft_dir

    trained = {"sft": (sft_dir, "train-sft", "SFT"), "sft_rl": (rl_dir, "train-rl", "RL")}
    if name in trained:
        where, command, label = trained[name]
        folder = where(settings.data_dir)
        if not (folder / "config.json").is_file():
            raise ModelUnavailable(f"The {label} rewriter is not trained: run `atelier prompts {command}` first.")
        return TransformersPromptRewriter(str(folder), name=name, max_new_tokens=64)
    if name == "smollm2":
        from app.adapters.transformers.smollm2 import smollm2_path

        return TransformersPromptRewriter(smollm2_path(str(Path(settings.models_dir) / "llm")), name="smollm2")
    return TransformersPromptRewriter(name, device=pick_device(settings.device))


def prompt_rewards(settings: Settings, reader: SceneReader) -> list[RewardModel]:
    """Content integrity (CLIPScore when a CLIP model is configured, else the demo world's checker),
    aesthetics (LAION's predictor when its weights are configured, else the demo world's image-quality
    score) and, once fitted, the preference model."""
    from app.adapters.rewards.aesthetic import DemoAestheticReward, LaionAestheticReward
    from app.adapters.rewards.integrity import CheckerIntegrityReward
    from app.adapters.rewards.preference import BradleyTerryPreferenceReward
    from app.adapters.storage.artifacts import preference_path

    aesthetic: RewardModel = DemoAestheticReward(reader)
    if settings.aesthetic_clip and settings.aesthetic_predictor:
        aesthetic = LaionAestheticReward(
            settings.aesthetic_clip, settings.aesthetic_predictor, device=pick_device(settings.device)
        )
    integrity: RewardModel = CheckerIntegrityReward(reader)
    if settings.integrity_clip:
        from app.adapters.rewards.clip_integrity import ClipIntegrityReward

        integrity = ClipIntegrityReward(settings.integrity_clip, device=pick_device(settings.device))
    rewards = [integrity, aesthetic]
    preference = preference_path(settings.data_dir)
    if preference.is_file():  # fitted by `atelier prompts train-preference`
        rewards.append(BradleyTerryPreferenceReward(reader, str(preference)))
    return rewards
