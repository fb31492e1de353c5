"""A concept the demo model has never seen, as training data for a LoRA: pink (粉色) shapes.

Three quarters of the scenes show pink shapes; a quarter are ordinary scenes of the demo world (regularisation
images, as kohya users add them, so the LoRA keeps what the model knows). A fifth of the (shape, position) pairs
never appear in pink: held-out prompts ask for exactly those, so the benchmark measures the colour, not recall.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

from app.adapters.demo_world.render import render
from app.demo_world.scenes import Scene, SceneSampler, caption
from app.demo_world.vocabulary import NEW_COLOURS, POSITIONS, SHAPES
from app.lab.demo_world.evaluate import Prompt

CONCEPT = NEW_COLOURS[0]


def held_out_pair(shape: str, position: str | None) -> bool:
    return position is not None and (7 * SHAPES.index(shape) + POSITIONS.index(position)) % 5 == 0


def training_scenes(n: int, seed: int) -> list[Scene]:
    """``n`` scenes: pink ones on no held-out pair, and every fourth an ordinary one."""
    rng = random.Random(seed)
    pink = SceneSampler(rng, colours=(CONCEPT,), style_rate=0.0)
    ordinary = SceneSampler(rng, style_rate=0.0)
    out: list[Scene] = []
    while len(out) < n:
        if len(out) % 4 == 3:
            out.append(ordinary.sample())
            continue
        scene = pink.sample()
        if not any(held_out_pair(o.shape, o.position) for o in scene.objects):
            out.append(scene)
    return out


def concept_prompts(n: int, seed: int) -> list[Prompt]:
    """Single pink objects on held-out (shape, position) pairs, captioned as the demo benchmark's prompts."""
    rng = random.Random(seed)
    sampler = SceneSampler(rng, colours=(CONCEPT,), style_rate=0.0)
    prompts: list[Prompt] = []
    while len(prompts) < n:
        scene = sampler.sample(1)
        if held_out_pair(scene.objects[0].shape, scene.objects[0].position):
            prompts.append(Prompt(caption(scene, rng, "zh", size_rate=1.0), scene, rng.randrange(1 << 31)))
    return prompts


def scene_files(scenes: list[Scene], seed: int) -> dict[str, bytes]:
    """The scenes as a LoRA's training folder holds them: ``scene-NNN.png`` with a ``scene-NNN.txt`` caption."""
    from PIL import Image

    rng = random.Random(seed)
    files: dict[str, bytes] = {}
    for number, scene in enumerate(scenes):
        buffer = io.BytesIO()
        Image.fromarray(render(scene, seed=seed + number)).save(buffer, format="PNG")
        files[f"scene-{number:03d}.png"] = buffer.getvalue()
        files[f"scene-{number:03d}.txt"] = caption(scene, rng, "zh", size_rate=1.0).encode()
    return files


def write_scenes(out_dir: str, n: int = 64, seed: int = 0) -> dict[str, Any]:
    """Write ``n`` training scenes of the concept to ``out_dir``; returns what was written."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    scenes = training_scenes(n, seed)
    for name, data in scene_files(scenes, seed).items():
        (folder / name).write_bytes(data)
    pink = sum(any(o.colour == CONCEPT for o in s.objects) for s in scenes)
    return {"out_dir": str(folder), "images": len(scenes), "concept_images": pink, "concept": CONCEPT}
