"""The preference reward: a Bradley–Terry model of the picks users make among a turn's candidates.

Each pick gives pairs (chosen ≻ every other candidate rendered in that turn). The model scores a
candidate s(x) = w · φ(x) over standardised features φ of its image (the demo world's reading of it) and
fits P(a ≻ b) = σ(s(a) − s(b)) by L2-regularised logistic regression on feature differences (full-batch
gradient descent; deterministic). The reward is σ(s(x)), scores centred on the training items' mean, so
a candidate as preferred as the average one scores 0.5.

Features φ (demo world, documented): the three image-quality terms (sharpness, cleanliness, saturation),
the share of the picture covered by shapes, the mean brightness of the shapes, the number of objects, one
flag per style seen (outline, gradient, shadow) and one for a dark (black or gray) background.

For the demo world, ``SimulatedUser`` stands in for real users: each has a stated taste (a weight per
feature name), picks the candidate its taste scores highest, with a Gumbel-noise temperature so picks
are not always the same, and so produces the pairs a real user would.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from app.adapters.rewards.aesthetic import image_quality
from app.demo_world.vocabulary import STYLES
from app.domain.errors import InvalidParameters, ModelUnavailable
from app.ports.generation import RgbImage
from app.ports.prompt_sessions import RewardInput, RewardModel
from app.ports.scenes import SceneReader

FEATURES = (
    "sharpness",
    "cleanliness",
    "saturation",
    "coverage",
    "brightness",
    "objects",
    *(f"style_{s}" for s in STYLES),
    "dark_background",
)


def features(image: RgbImage, reader: SceneReader) -> list[float]:
    q = image_quality(image)
    scene = reader.read(image)
    styles = {s for o in scene.objects for s in o.styles}
    return [
        q["sharpness"],
        q["cleanliness"],
        q["saturation"],
        q["coverage"],
        q["brightness"],
        float(len(scene.objects)),
        *(float(s in styles) for s in STYLES),
        float(scene.background in ("black", "gray")),
    ]


def fit_bradley_terry(
    pairs: Sequence[tuple[Sequence[float], Sequence[float]]], l2: float = 1e-2, steps: int = 2000, lr: float = 0.5
) -> dict[str, list[float] | float]:
    """Weights of the Bradley–Terry model for ``(winner features, loser features)`` pairs, with the
    standardisation (mean, scale) and the training items' mean score."""
    if not pairs:
        raise InvalidParameters("No preference pairs to learn from: pick candidates in some turns first.")
    items = np.array([x for pair in pairs for x in pair], dtype=np.float64)
    mean = items.mean(0)
    scale = items.std(0)
    scale[scale < 1e-9] = 1.0
    win = (np.array([p[0] for p in pairs], dtype=np.float64) - mean) / scale
    lose = (np.array([p[1] for p in pairs], dtype=np.float64) - mean) / scale
    diff = win - lose
    w = np.zeros(diff.shape[1])
    for _ in range(steps):
        margin = diff @ w
        grad = -(diff * (1.0 / (1.0 + np.exp(margin)))[:, None]).mean(0) + l2 * w
        w -= lr * grad
    centre = float((((items - mean) / scale) @ w).mean())
    return {"weights": w.tolist(), "mean": mean.tolist(), "scale": scale.tolist(), "centre": centre}


def pair_accuracy(
    model: Mapping[str, list[float] | float], pairs: Sequence[tuple[Sequence[float], Sequence[float]]]
) -> float:
    """Share of pairs whose winner the model scores higher."""
    if not pairs:
        return 0.0
    hits = sum(_raw(model, a) > _raw(model, b) for a, b in pairs)
    return hits / len(pairs)


def _raw(model: Mapping[str, list[float] | float], x: Sequence[float]) -> float:
    w, mean, scale = (np.asarray(model[k], dtype=np.float64) for k in ("weights", "mean", "scale"))
    return float(((np.asarray(x, dtype=np.float64) - mean) / scale) @ w)


class BradleyTerryPreferenceReward(RewardModel):
    """Loads the fitted model from ``path`` (JSON); raises ``ModelUnavailable`` when it was never trained."""

    name = "preference"

    def __init__(self, reader: SceneReader, path: str) -> None:
        self._reader = reader
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelUnavailable(f"No preference model at {path}: run `atelier prompts train-preference` first.")
        data = json.loads(self.path.read_text())
        if data.get("features") != list(FEATURES):
            raise ModelUnavailable(f"The preference model at {path} was fitted on other features; train it again.")
        self.model = data

    def score(self, inputs: list[RewardInput]) -> list[float]:
        centre = float(self.model["centre"])
        return [1.0 / (1.0 + math.exp(-(_raw(self.model, features(i.image, self._reader)) - centre))) for i in inputs]


def save_model(model: Mapping[str, object], path: str | Path, **meta: object) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps({"features": list(FEATURES), **model, **meta}, indent=2))
    tmp.replace(target)


class SimulatedUser:
    """A demo-world user with a stated taste: ``taste`` weights feature names (missing ones count 0)."""

    def __init__(self, taste: Mapping[str, float], temperature: float = 0.05, seed: int = 0) -> None:
        unknown = set(taste) - set(FEATURES)
        if unknown:
            raise InvalidParameters(f"Unknown taste features: {', '.join(sorted(unknown))}.", field="taste")
        self.taste = np.array([taste.get(f, 0.0) for f in FEATURES])
        self.temperature = temperature
        self.rng = random.Random(seed)

    def pick(self, candidates: Sequence[Sequence[float]]) -> int:
        """The index of the candidate this user picks (its taste plus Gumbel noise)."""
        scores = [float(np.asarray(c) @ self.taste) for c in candidates]
        noisy = [s - self.temperature * math.log(-math.log(self.rng.random() or 1e-12)) for s in scores]
        return max(range(len(noisy)), key=noisy.__getitem__)
