"""Fitting the Bradley–Terry preference reward: from the picks stored in prompt sessions, or from simulated
demo-world users (``--simulate TASTE``).

Simulated turns: a random demo-world scene (``SceneSampler``) and ``k`` variants of it, each the scene with
one random instruction applied (so they differ the way a turn's candidates do), drawn by the exact
renderer (the diffusion model would give the same pictures, slower); the user picks one, giving ``k − 1``
pairs. Turns are split 80/20: the held-out pair accuracy is reported, then the model is refitted on all.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.adapters.rewards.preference import (
    FEATURES,
    SimulatedUser,
    features,
    fit_bradley_terry,
    pair_accuracy,
    save_model,
)
from app.demo_world.instructions import apply, sample_instruction
from app.demo_world.scenes import SceneSampler
from app.domain.errors import InvalidParameters
from app.domain.prompt_sessions import preference_pairs
from app.ports.generation import ImageStore, RgbImage
from app.ports.prompt_sessions import PromptSessionStore
from app.ports.scenes import SceneReader

TASTES: dict[str, dict[str, float]] = {
    "styled": {"style_outline": 1.0, "style_gradient": 1.0, "style_shadow": 1.0},
    "bold": {"saturation": 1.0, "coverage": 4.0},
    "dark": {"dark_background": 1.0, "brightness": 0.5},
}

Pair = tuple[list[float], list[float]]


def stored_turn_pairs(store: PromptSessionStore, images: ImageStore, reader: SceneReader) -> list[list[Pair]]:
    """The pairs of every picked turn in the store, grouped by turn."""
    sessions, offset = [], 0
    while True:
        page, total = store.list(limit=200, offset=offset)
        sessions += page
        offset += len(page)
        if not page or offset >= total:
            break
    groups: dict[int, list[Pair]] = {}
    cache: dict[str, list[float]] = {}

    def feat(image_id: str) -> list[float]:
        if image_id not in cache:
            cache[image_id] = features(images.read(image_id), reader)
        return cache[image_id]

    for winner, loser in preference_pairs(sessions):
        assert winner.image_id is not None and loser.image_id is not None
        groups.setdefault(id(winner), []).append((feat(winner.image_id), feat(loser.image_id)))
    return list(groups.values())


def simulated_turn_pairs(taste: str, turns: int, k: int, reader: SceneReader, seed: int = 0) -> list[list[Pair]]:
    from app.adapters.demo_world.render import render

    if taste not in TASTES:
        raise InvalidParameters(f"Unknown taste {taste!r}; use one of {', '.join(TASTES)}.", field="simulate")
    rng = random.Random(seed)
    sampler = SceneSampler(rng)
    user = SimulatedUser(TASTES[taste], seed=seed)
    groups: list[list[Pair]] = []
    for _ in range(turns):
        scene = sampler.sample()
        variants = [apply(scene, sample_instruction(scene, rng)) for _ in range(k)]
        feats = []
        for variant in variants:
            pixels = np.ascontiguousarray(render(variant, seed=rng.randrange(2**31)))
            feats.append(features(RgbImage(pixels.shape[1], pixels.shape[0], pixels.tobytes()), reader))
        best = user.pick(feats)
        groups.append([(feats[best], f) for j, f in enumerate(feats) if j != best])
    return groups


def _floats(value: list[float] | float) -> list[float]:
    return value if isinstance(value, list) else [value]


def train_preference(groups: Sequence[list[Pair]], out: str | Path, source: str, seed: int = 0) -> dict[str, Any]:
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    cut = max(1, int(0.8 * len(order))) if len(order) > 1 else len(order)
    train = [p for i in order[:cut] for p in groups[i]]
    held = [p for i in order[cut:] for p in groups[i]]
    if not train:
        raise InvalidParameters("No preference pairs to learn from: pick candidates in some turns first.")
    held_accuracy = pair_accuracy(fit_bradley_terry(train), held) if held else None
    model = fit_bradley_terry(train + held)
    report = {
        "source": source,
        "turns": len(groups),
        "pairs": len(train) + len(held),
        "held_out_pairs": len(held),
        "held_out_accuracy": held_accuracy,
        "train_accuracy": pair_accuracy(model, train + held),
        "weights": dict(zip(FEATURES, (round(float(w), 4) for w in _floats(model["weights"])), strict=True)),
    }
    save_model(model, out, report=report)
    return report
