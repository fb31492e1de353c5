"""The checker against the renderer's ground truth: how often it reads rendered scenes exactly, and the
re-derivation of its calibrated constants (``PROTOTYPES``, ``EXTENT_PER_RADIUS``) from renders.

Both render scenes with ``render.py`` and read them back with :mod:`app.adapters.demo_world.checker`, so the
reader is measured and tuned on images whose content is known exactly.
"""

from __future__ import annotations

import random

import cv2
import numpy as np

from app.adapters.demo_world.checker import FEATURES, OpenCvSceneReader, segment
from app.adapters.demo_world.render import RADIUS, render
from app.demo_world.integrity import integrity
from app.demo_world.scenes import SceneSampler
from app.demo_world.vocabulary import SHAPES


def ground_truth_accuracy(n: int = 1000, seed: int = 0, blur: bool = False) -> dict[str, float]:
    """Accuracy of the reader on ``n`` rendered scenes of ``SceneSampler(random.Random(seed), style_rate=0.3)``.

    ``exact``: share of scenes read exactly (every object, attribute and the background; styles ignored);
    ``shape``/``colour``/``position``/``size``/``styles``: share of objects whose attribute is read right (an object
    that was not found counts as wrong); ``background``: share of scenes; ``exact_with_styles`` compares styles too.
    ``blur`` reads each render after a 3x3 Gaussian blur, a stand-in for the softness of generated images.
    """
    reader = OpenCvSceneReader()
    sampler = SceneSampler(random.Random(seed), style_rate=0.3)
    names = ("shape", "colour", "position", "size", "styles")
    hits = dict.fromkeys(names, 0)
    objects = exact = exact_with_styles = background = 0
    for i in range(n):
        scene = sampler.sample()
        image = render(scene, seed=i)
        if blur:
            image = cv2.GaussianBlur(image, (3, 3), 0)
        seen = reader.read(image)
        exact += integrity(scene.without_styles(), seen.without_styles()).exact
        report = integrity(scene, seen)
        exact_with_styles += report.exact
        background += seen.background == scene.background
        for asked, found in zip(scene.objects, report.matched, strict=True):
            objects += 1
            if found is not None:
                for attribute in names[:-1]:
                    hits[attribute] += getattr(asked, attribute) == getattr(found, attribute)
                hits["styles"] += set(asked.styles) == set(found.styles)
    total = max(objects, 1)
    return {
        "exact": exact / max(n, 1),
        **{attribute: hits[attribute] / total for attribute in names},
        "background": background / max(n, 1),
        "exact_with_styles": exact_with_styles / max(n, 1),
        "n": n,
    }


def calibrate(n: int = 1500, seed: int = 1) -> dict[str, dict[str, object]]:
    """Re-derive ``PROTOTYPES`` and ``EXTENT_PER_RADIUS`` from ``n`` one-object renders (clean, blurred, noisy).

    A developer tool: paste its output over the constants after changing the renderer or the features. The true
    radius of each render is replayed from ``render``'s own random stream (its first draw is the radius jitter).
    """
    sampler = SceneSampler(random.Random(seed), style_rate=0.3)
    samples: dict[str, list[list[float]]] = {s: [] for s in SHAPES}
    ratios: dict[str, list[float]] = {s: [] for s in SHAPES}
    for i in range(n):
        scene = sampler.sample(1)
        obj = scene.objects[0]
        image = render(scene, seed=i)
        blurred = cv2.GaussianBlur(image, (3, 3), 0)
        noise = np.random.default_rng(i).normal(0.0, 6.0, image.shape)
        noisy = np.clip(blurred + noise, 0, 255).astype(np.uint8)
        for variant, img in enumerate((image, blurred, noisy)):
            blobs = segment(img)[2]
            if len(blobs) != 1:
                continue
            features = blobs[0].features
            samples[obj.shape].append([features[k] for k in FEATURES])
            if variant == 0 and not obj.styles:
                radius = RADIUS[obj.size or "large"] + random.Random(i).uniform(-0.5, 0.5)
                ratios[obj.shape].append(features["extent"] / radius)
    prototypes: dict[str, object] = {
        s: (tuple(np.mean(v, axis=0).round(4).tolist()), tuple(np.std(v, axis=0).round(4).tolist()))
        for s, v in samples.items()
        if v
    }
    extent: dict[str, object] = {s: round(float(np.median(v)), 3) for s, v in ratios.items() if v}
    return {"prototypes": prototypes, "extent_per_radius": extent}
