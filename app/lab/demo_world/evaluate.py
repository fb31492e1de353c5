"""Checker-judged quality of a text-to-image model on held-out demo-world prompts.

Prompts are Chinese captions (varied phrasing, size always stated) of scenes from the held-out
split: every single-object prompt, and at least one object of every two-object prompt, is a
(colour, shape, position) combination that no training scene contains. Each image is generated
with its own seed, read by the OpenCV checker and paired with the prompt's objects (``integrity``).

Metrics:
- ``single_colour_shape_acc``: single-object prompts whose object is seen with its colour and shape;
- ``position_acc``: single-object prompts whose object is seen with its colour, shape and position
  (position counts only on the right object);
- ``two_object_acc``: two-object prompts where both objects are seen with their colour and shape;
- ``two_object_position_acc``: the same, with both positions right too;
- ``single_exact``: colour, shape, position and size right and nothing else drawn.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from app.adapters.demo_world.checker import OpenCvSceneReader
from app.demo_world.integrity import integrity
from app.demo_world.scenes import Scene, SceneObject, SceneSampler, caption


@dataclass(frozen=True)
class Prompt:
    text: str
    scene: Scene
    seed: int


def heldout_prompts(n_single: int = 200, n_two: int = 100, seed: int = 1234) -> list[Prompt]:
    rng = random.Random(seed)
    sampler = SceneSampler(rng, split="heldout", style_rate=0.0)
    prompts = []
    for n_objects, count in ((1, n_single), (2, n_two)):
        for _ in range(count):
            scene = sampler.sample(n_objects)
            prompts.append(Prompt(caption(scene, rng, "zh", size_rate=1.0), scene, rng.randrange(1 << 31)))
    return prompts


def generate(pipe: Any, prompts: list[Prompt], steps: int = 20, guidance: float = 7.5, batch: int = 25) -> list[Any]:
    """Images (64x64 RGB uint8 arrays) for the prompts, each from a generator seeded with its prompt's seed."""
    import torch

    images: list[Any] = []
    for i in range(0, len(prompts), batch):
        chunk = prompts[i : i + batch]
        generators = [torch.Generator().manual_seed(p.seed) for p in chunk]
        out = pipe(
            [p.text for p in chunk],
            height=64,
            width=64,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=generators,
            output_type="np",
        ).images
        images += [np.clip(np.round(img * 255), 0, 255).astype(np.uint8) for img in out]
    return images


def _has(seen: SceneObject | None, asked: SceneObject, with_position: bool = False) -> bool:
    if seen is None or (seen.shape, seen.colour) != (asked.shape, asked.colour):
        return False
    return not with_position or seen.position == asked.position


def score(prompts: list[Prompt], images: list[Any], reader: OpenCvSceneReader | None = None) -> dict[str, Any]:
    reader = reader or OpenCvSceneReader()
    single = {"colour_shape": 0, "position": 0, "exact": 0, "n": 0}
    two = {"all": 0, "all_position": 0, "n": 0}
    for prompt, image in zip(prompts, images, strict=True):
        seen = reader.read(image)
        asked = Scene(prompt.scene.objects, None)
        report = integrity(asked, Scene(seen.objects, None))
        if len(asked.objects) == 1:
            single["n"] += 1
            obj, match = asked.objects[0], report.matched[0]
            single["colour_shape"] += _has(match, obj)
            single["position"] += _has(match, obj, with_position=True)
            single["exact"] += report.exact
        else:
            two["n"] += 1
            two["all"] += all(_has(m, o) for m, o in zip(report.matched, asked.objects, strict=True))
            two["all_position"] += all(
                _has(m, o, with_position=True) for m, o in zip(report.matched, asked.objects, strict=True)
            )
    ns, nt = max(single["n"], 1), max(two["n"], 1)
    return {
        "single_colour_shape_acc": round(single["colour_shape"] / ns, 4),
        "position_acc": round(single["position"] / ns, 4),
        "single_exact": round(single["exact"] / ns, 4),
        "two_object_acc": round(two["all"] / nt, 4),
        "two_object_position_acc": round(two["all_position"] / nt, 4),
        "n_single": single["n"],
        "n_two": two["n"],
    }


def load_pipeline(path: str | Path) -> Any:
    import diffusers as _diffusers
    import torch

    from app.adapters.diffusers.generator import quiet_libraries

    quiet_libraries()
    diffusers: Any = _diffusers
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_grid(images: list[Any], path: str | Path, columns: int = 10, zoom: int = 2) -> None:
    """A contact sheet of the images (for looking at a run, not for scoring)."""
    import cv2

    rows = [images[i : i + columns] for i in range(0, len(images), columns)]
    blank = np.zeros_like(images[0])
    sheet = np.concatenate([np.concatenate(r + [blank] * (columns - len(r)), 1) for r in rows], 0)
    sheet = cv2.resize(sheet, (sheet.shape[1] * zoom, sheet.shape[0] * zoom), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(path), sheet[:, :, ::-1])


def vae_reconstructions(vae: Any, n: int = 200, seed: int = 4242) -> dict[str, Any]:
    """How the checker reads a VAE's reconstructions (encode, decode the posterior mean) of rendered
    held-out scenes: the VAE caps what any UNet above it can draw.

    Two sets of ``n`` scenes: every object with a drop shadow (``shadow_seen``: every stated shadow
    seen; ``shadowed_exact``: the scene read exactly, styles included), and the usual mix of styles
    (each style on 20 % of objects; ``mixed_exact`` with styles, ``mixed_exact_ignoring_styles``
    without)."""
    import torch

    from app.adapters.demo_world.render import render
    from app.lab.demo_world.networks import from_tensor, to_tensor

    reader = OpenCvSceneReader()
    out: dict[str, Any] = {"scenes": n}
    for style_rate, shadowed in ((0.0, True), (0.2, False)):
        sampler = SceneSampler(random.Random(seed), split="heldout", style_rate=style_rate)
        scenes = [sampler.sample() for _ in range(n)]
        if shadowed:
            scenes = [Scene(tuple(replace(o, styles=("shadow",)) for o in s.objects), s.background) for s in scenes]
        x = to_tensor([render(s, seed=i) for i, s in enumerate(scenes)])
        with torch.no_grad():
            param = next(vae.parameters(), None)
            x = x.to(param.dtype) if param is not None else x
            rec = vae.decode(vae.encode(x).latent_dist.mode()).sample.float()
        reads = [reader.read(a) for a in from_tensor(rec)]
        exact = [integrity(s, r).exact for s, r in zip(scenes, reads, strict=True)]
        if shadowed:
            seen = [bool(r.objects) and all("shadow" in o.styles for o in r.objects) for r in reads]
            out["shadow_seen"] = round(sum(seen) / n, 4)
            out["shadowed_exact"] = round(sum(exact) / n, 4)
        else:
            plain = [
                integrity(s.without_styles(), r.without_styles()).exact for s, r in zip(scenes, reads, strict=True)
            ]
            out["mixed_exact"] = round(sum(exact) / n, 4)
            out["mixed_exact_ignoring_styles"] = round(sum(plain) / n, 4)
    return out
