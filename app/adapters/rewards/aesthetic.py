"""Aesthetic rewards: the demo world's documented image-quality score, and a LAION-aesthetic-predictor
compatible adapter for when CLIP and predictor weights exist.

**Demo world** (``DemoAestheticReward``). A demo-world picture is "more refined" (what 更精致一些 asks
for) when its shapes are crisp, its colours strong, its background clean and its shapes styled (outline,
gradient, shadow: the beautification the InstructPE-style records add). The score in [0, 1] is

    0.3 · sharpness + 0.2 · cleanliness + 0.2 · saturation + 0.3 · styled

- sharpness: the share of the image's gradient energy (central-difference |∇| of the grey image in
  [0, 1]) in pixels where it is at least 0.125, i.e. a one-pixel step of a quarter of the full range:
  crisp edges keep the energy there, blur spreads it over weak gradients;
- cleanliness: the share of border pixels within 24 levels (RGB max-norm) of the border's median colour;
- saturation: mean HSV saturation of the pixels that are not background;
- styled: 1 when the checker sees a style on any object, else 0.

**LAION** (``LaionAestheticReward``): CLIP image embedding (L2-normalised) → the improved aesthetic
predictor's MLP (1024-128-64-16-1; ``layers.{0,2,4,6,7}`` as in its ``sac+logos+ava1-l14-linearMSE.pth``),
whose 1–10 rating is mapped to [0, 1] as (s − 1) / 9, clamped.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from app.ports.generation import RgbImage
from app.ports.prompt_sessions import RewardInput, RewardModel
from app.ports.scenes import SceneReader


def _array(image: RgbImage) -> np.ndarray:
    return np.frombuffer(image.rgb, dtype=np.uint8).reshape(image.height, image.width, 3).astype(np.float32)


def image_quality(image: RgbImage) -> dict[str, float]:
    """The three pixel terms of the demo-world score (each in [0, 1]), and two more the preference model
    uses: ``coverage`` (the share of non-background pixels) and ``brightness`` (their mean level)."""
    img = _array(image)
    grey = img.mean(-1) / 255.0
    gy, gx = np.gradient(grey)
    magnitude = np.hypot(gx, gy)
    energy = float(magnitude.sum())
    sharpness = float(magnitude[magnitude >= 0.125].sum() / energy) if energy > 0 else 0.0
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    median = np.median(border, axis=0)
    cleanliness = float((np.abs(border - median).max(-1) <= 24).mean())
    foreground = np.abs(img - median).max(-1) > 24
    top, low = img.max(-1), img.min(-1)
    saturation_map = np.where(top > 0, (top - low) / np.maximum(top, 1e-6), 0.0)
    saturation = float(saturation_map[foreground].mean()) if foreground.any() else 0.0
    brightness = float(img[foreground].mean() / 255.0) if foreground.any() else 0.0
    return {
        "sharpness": sharpness,
        "cleanliness": cleanliness,
        "saturation": saturation,
        "coverage": float(foreground.mean()),
        "brightness": brightness,
    }


class DemoAestheticReward(RewardModel):
    name = "aesthetic"

    def __init__(self, reader: SceneReader) -> None:
        self._reader = reader

    def score(self, inputs: list[RewardInput]) -> list[float]:
        out = []
        for item in inputs:
            q = image_quality(item.image)
            styled = float(any(o.styles for o in self._reader.read(item.image).objects))
            out.append(0.3 * q["sharpness"] + 0.2 * q["cleanliness"] + 0.2 * q["saturation"] + 0.3 * styled)
        return out


class LaionAestheticReward(RewardModel):
    """``clip_path``: a CLIP model folder (or hub id); ``predictor_path``: the predictor's state dict."""

    name = "aesthetic"

    def __init__(self, clip_path: str, predictor_path: str, device: str = "cpu") -> None:
        import torch
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        self._torch = torch
        self.device = torch.device(device)
        local = os.path.isdir(clip_path)  # else a hub id, for machines that may download
        self.processor: Any = CLIPImageProcessor.from_pretrained(clip_path, local_files_only=local)
        clip: Any = CLIPVisionModelWithProjection.from_pretrained(clip_path, local_files_only=local)
        self.clip: Any = clip.to(self.device)
        self.clip.eval().requires_grad_(False)
        state = torch.load(predictor_path, map_location="cpu", weights_only=True)
        dim = int(state["layers.0.weight"].shape[1])
        nn = torch.nn
        self.head = nn.Sequential(
            nn.Linear(dim, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )
        self.head.load_state_dict({k.removeprefix("layers."): v for k, v in state.items()})
        self.head.to(self.device).eval().requires_grad_(False)

    def rating(self, images: list[RgbImage]) -> list[float]:
        """The predictor's 1–10 ratings."""
        from PIL import Image

        torch = self._torch
        pictures = [Image.frombytes("RGB", (i.width, i.height), i.rgb) for i in images]
        with torch.inference_mode():
            pixels = self.processor(images=pictures, return_tensors="pt")["pixel_values"].to(self.device)
            embeds = self.clip(pixel_values=pixels).image_embeds
            embeds = embeds / embeds.norm(dim=-1, keepdim=True)
            return [float(v) for v in self.head(embeds).squeeze(-1)]

    def score(self, inputs: list[RewardInput]) -> list[float]:
        return [min(1.0, max(0.0, (r - 1.0) / 9.0)) for r in self.rating([i.image for i in inputs])]
