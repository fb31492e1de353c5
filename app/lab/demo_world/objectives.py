"""What the demo-world stages optimise: the text tower's caption targets, the VAE's pixel-weighted
reconstruction loss (small objects, colour edges and drop shadows weighing more), the UNet's Min-SNR weights,
and the seeded batches of rendered scenes they train on."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from app.adapters.demo_world.render import BACKGROUND_RGB, render
from app.demo_world.parsing import parse_caption
from app.demo_world.scenes import Scene, SceneSampler, caption
from app.demo_world.vocabulary import BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZES, STYLES
from app.lab.demo_world.networks import MAX_TOKENS, to_tensor

# What a caption states, as class indices: two object slots in order of mention, each with
# (shape, colour, position, size) and one binary per style, and the background. Index 0 is "not
# stated" (or no second object). Factored per attribute, so combinations held out of training are
# represented from attributes that were seen, and position weighs as much as colour or shape.
_SLOT_FIELDS = (("shape", SHAPES), ("colour", COLOURS), ("position", POSITIONS), ("size", SIZES))
TARGET_CLASSES = [len(values) + 1 for _, values in _SLOT_FIELDS] * 2 + [2] * (len(STYLES) * 2) + [len(BACKGROUNDS) + 1]


def caption_targets(text: str) -> torch.Tensor:
    """Class indices (see ``TARGET_CLASSES``) of what ``text`` states, from ``parse_caption``."""
    stated = parse_caption(text)
    out: list[int] = []
    for slot in range(2):
        obj = stated.objects[slot] if slot < len(stated.objects) else None
        for name, values in _SLOT_FIELDS:
            value = getattr(obj, name) if obj is not None else None
            out.append(values.index(value) + 1 if value else 0)
    for slot in range(2):
        obj = stated.objects[slot] if slot < len(stated.objects) else None
        out += [int(obj is not None and style in obj.styles) for style in STYLES]
    out.append(BACKGROUNDS.index(stated.background) + 1 if stated.background else 0)
    return torch.tensor(out)


def _split_logits(logits: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.split(logits, TARGET_CLASSES, dim=-1))


def text_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    parts = _split_logits(logits)
    return sum((F.cross_entropy(x, target[:, k]) for k, x in enumerate(parts)), torch.zeros(()))


def text_exactness(text_encoder: Any, head: Any, tok: Any, seed: int, n: int = 500) -> float:
    """Share of held-out-split captions whose stated content the pretrained tower's head reads back exactly."""
    rng = random.Random(seed * 13 + 3)
    sampler = SceneSampler(rng, split="heldout", style_rate=0.2)
    caps = [caption(sampler.sample(), rng, "zh") for _ in range(n)]
    batch = tok(caps, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = text_encoder.eval()(batch.input_ids, attention_mask=batch.attention_mask)
        mask = batch.attention_mask.unsqueeze(-1).float()
        logits = head((out.last_hidden_state * mask).sum(1) / mask.sum(1))
    target = torch.stack([caption_targets(c) for c in caps])
    predicted = torch.stack([x.argmax(-1) for x in _split_logits(logits)], dim=1)
    return float((predicted == target).all(dim=1).float().mean())


def loss_weights(snr: torch.Tensor, gamma: float, v_prediction: bool) -> torch.Tensor:
    """Min-SNR-gamma weights (Hang et al. 2023) for the per-sample MSE of the model's prediction.

    Min-SNR caps the x0-space weight at gamma: ``min(SNR, gamma) * |x0 - x0_hat|^2``. For epsilon
    prediction that is ``min(SNR, gamma) / SNR`` on the epsilon MSE. The v-prediction MSE already is
    ``(SNR + 1) * |x0 - x0_hat|^2``; its published weight ``min(SNR, gamma) / (SNR + 1)`` is 0 at the
    zero-SNR step, which would leave exactly the step that has to place objects untrained. We cap the
    x0 weight of the v-loss, ``min(SNR + 1, gamma) / (SNR + 1)``: 1 wherever SNR < gamma - 1
    (the noisy steps, the zero-SNR one included) and the same ``~gamma / SNR`` decay as Min-SNR on
    the nearly clean steps.
    """
    if v_prediction:
        return torch.clamp(snr + 1, max=gamma) / (snr + 1)
    return torch.clamp(snr, max=gamma) / snr


def render_batch(
    seed: int, step: int, n: int, style_rate: float = 0.2, colours: tuple[str, ...] = COLOURS
) -> tuple[list[Scene], torch.Tensor, list[int]]:
    """Scenes of objects in ``colours``, their images and the render seeds (each image's jitter)."""
    rng = random.Random(seed * 1_000_003 + step)
    sampler = SceneSampler(rng, split="train", style_rate=style_rate, colours=colours)
    scenes = [sampler.sample() for _ in range(n)]
    seeds: list[int] = []
    images = []
    for scene in scenes:
        seeds.append(rng.randrange(1 << 30))
        images.append(render(scene, seed=seeds[-1]))
    return scenes, to_tensor(images), seeds


def shadow_mask(scenes: list[Scene], seeds: list[int]) -> torch.Tensor:
    """(N, 1, H, W): 1 where the image of ``scenes[i]`` rendered with ``seeds[i]`` differs from the same
    scene rendered without its drop shadows (the visible shadow pixels), else 0."""
    masks = []
    for scene, seed in zip(scenes, seeds, strict=True):
        if not any("shadow" in o.styles for o in scene.objects):
            masks.append(np.zeros((64, 64), dtype=bool))
            continue
        plain = Scene(
            tuple(replace(o, styles=tuple(x for x in o.styles if x != "shadow")) for o in scene.objects),
            scene.background,
        )
        diff = np.abs(render(scene, seed=seed).astype(np.int16) - render(plain, seed=seed).astype(np.int16))
        masks.append(diff.max(-1) > 2)
    return torch.from_numpy(np.stack(masks)).float()[:, None]


# The area of a large circle: objects this large or larger keep the plain shape weight.
_REFERENCE_AREA = math.pi * 10.0**2


def pixel_weights(x: torch.Tensor, scenes: list[Scene], small_object: float = 0.0, edge: float = 0.0) -> torch.Tensor:
    """Per-pixel loss weights (N, 1, H, W) for images ``x`` of ``scenes``.

    Shape pixels (those away from the background colour) weigh 5x. With ``small_object`` > 0 each
    connected shape's pixels weigh ``(reference area / its area) ** small_object`` more (the ratio
    capped at 6), so a small shape counts about as much as a large one instead of 40% of it. With
    ``edge`` > 0, pixels within one pixel of a colour edge get ``edge`` more: corners and star points
    are where a blurred decoder loses the shape.
    """
    bg = torch.tensor([BACKGROUND_RGB[s.background or "gray"] for s in scenes], dtype=torch.float32)
    bg = (bg / 127.5 - 1.0)[:, :, None, None]
    fg = ((x - bg).abs().amax(1, keepdim=True) > 0.1).float()
    shape_weight = fg
    if small_object:
        masks = fg[:, 0].numpy().astype(np.uint8)
        scale = np.ones(masks.shape, dtype=np.float32)
        for b, mask in enumerate(masks):
            n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            for k in range(1, n):
                ratio = float(np.clip(_REFERENCE_AREA / max(int(stats[k, cv2.CC_STAT_AREA]), 1), 1.0, 6.0))
                scale[b][labels == k] = ratio**small_object
        shape_weight = fg * torch.from_numpy(scale)[:, None]
    weight = 1 + 4 * shape_weight
    if edge:
        gx = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().amax(1, keepdim=True)
        gy = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().amax(1, keepdim=True)
        grad = torch.zeros_like(fg)
        grad[:, :, :, 1:] += gx
        grad[:, :, :, :-1] += gx
        grad[:, :, 1:, :] += gy
        grad[:, :, :-1, :] += gy
        weight = weight + edge * F.max_pool2d((grad > 0.2).float(), 3, stride=1, padding=1)
    return weight


def vae_loss(
    vae: Any,
    x: torch.Tensor,
    scenes: list[Scene],
    small_object: float = 0.0,
    edge: float = 0.0,
    shadow: torch.Tensor | None = None,
) -> torch.Tensor:
    """``shadow``: extra per-pixel weight (N, 1, H, W) added to ``pixel_weights``."""
    post = vae.encode(x).latent_dist
    rec = vae.decode(post.mode()).sample
    weight = pixel_weights(x, scenes, small_object, edge)
    if shadow is not None:
        weight = weight + shadow
    err = rec - x
    loss: torch.Tensor = (err.pow(2) * weight).mean() + 0.5 * (err.abs() * weight).mean() + 1e-6 * post.kl().mean()
    return loss
