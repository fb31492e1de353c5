"""Render demo-world scenes with OpenCV: anti-aliased shapes on a flat background, 64x64 RGB.

Geometry (in pixels of the 64x64 canvas): grid cell centres at 11, 32 and 53 on both axes; a large
shape has radius 10, a small one 6.5 (the circle's radius; other shapes are scaled to a similar
extent); each shape's centre is jittered by up to 1.5 px and its radius by up to 0.5 px. Drawing is
done at 4x and downsampled with area averaging, which anti-aliases the edges. Styles: ``outline`` a
dark (on dark fills, light) border about 1.25 px wide, ``gradient`` a vertical shading from a lighter
to a darker tone of the fill, ``shadow`` a faint copy offset by 2 px behind the shape.
"""

from __future__ import annotations

import math
import random
from typing import Any

import cv2
import numpy as np

from app.demo_world.scenes import Scene, SceneObject, cell

SIZE = 64
SCALE = 4
CENTRES = (11.0, 32.0, 53.0)
RADIUS = {"large": 10.0, "small": 6.5}
JITTER = 1.5

RGB = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 30),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "purple": (150, 50, 200),
    "black": (20, 20, 20),
    "white": (245, 245, 245),
    "pink": (245, 120, 180),  # a new colour (NEW_COLOURS): the demo model never saw it
}
BACKGROUND_RGB = {"gray": (128, 128, 128), "white": (245, 245, 245), "black": (20, 20, 20), "blue": (60, 110, 200)}
# Scenes with a blue background never hold a blue shape; the two blues also differ enough to be read apart.


def _polygon(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    pts: list[Any]
    if shape == "square":
        s = r * 0.88
        pts = [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    elif shape == "triangle":
        R = r * 1.15
        cy += r * 0.15  # the centroid of an upright triangle sits low; lift the drawing to centre its extent
        pts = [(cx + R * math.cos(a), cy + R * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    elif shape == "star":
        R, inner = r * 1.15, r * 1.15 * 0.45
        pts = []
        for k in range(10):
            a = -math.pi / 2 + k * math.pi / 5
            rr = R if k % 2 == 0 else inner
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a) + r * 0.05))
    elif shape == "heart":
        t = np.linspace(0, 2 * math.pi, 64, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        scale = r / 16.0 * 1.05
        pts = list(zip(cx + x * scale, cy + (y + 1.5) * scale, strict=True))
    else:  # circle
        t = np.linspace(0, 2 * math.pi, 72, endpoint=False)
        pts = list(zip(cx + r * np.cos(t), cy + r * np.sin(t), strict=True))
    return np.round(np.array(pts, dtype=np.float64) * SCALE).astype(np.int32)


def _mix(colour: tuple[int, int, int], towards: int, amount: float) -> np.ndarray:
    c = np.array(colour, dtype=np.float64)
    return c + (towards - c) * amount


def _draw(canvas: np.ndarray, obj: SceneObject, background: tuple[int, int, int], rng: random.Random) -> None:
    row, col = cell(obj.position or "center")
    r = RADIUS[obj.size or "large"] + rng.uniform(-0.5, 0.5)
    cx = CENTRES[col] + rng.uniform(-JITTER, JITTER)
    cy = CENTRES[row] + rng.uniform(-JITTER, JITTER)
    poly = _polygon(obj.shape, cx, cy, r)
    if "shadow" in obj.styles:
        shadow = _mix(background, 0, 0.22) if sum(background) > 150 else _mix(background, 255, 0.18)
        offset = np.array([2 * SCALE, 2 * SCALE], dtype=np.int32)
        cv2.fillPoly(canvas, [poly + offset], tuple(float(v) for v in shadow), lineType=cv2.LINE_8)
    fill = RGB[obj.colour]
    if "gradient" in obj.styles:
        mask = np.zeros(canvas.shape[:2], dtype=np.uint8)
        cv2.fillPoly(mask, [poly], 255, lineType=cv2.LINE_8)
        top, bottom = poly[:, 1].min(), poly[:, 1].max()
        ys = np.clip((np.arange(canvas.shape[0]) - top) / max(bottom - top, 1), 0, 1)[:, None]
        light, dark = _mix(fill, 255, 0.35), _mix(fill, 0, 0.3)
        shade = light[None, :] * (1 - ys) + dark[None, :] * ys  # rows x 3
        region = mask > 0
        canvas[region] = np.broadcast_to(shade[:, None, :], canvas.shape)[region]
    else:
        cv2.fillPoly(canvas, [poly], fill, lineType=cv2.LINE_8)
    if "outline" in obj.styles:
        line = (235, 235, 235) if sum(fill) < 150 else (25, 25, 25)
        cv2.polylines(canvas, [poly], True, line, thickness=5, lineType=cv2.LINE_8)


def render(scene: Scene, seed: int = 0) -> np.ndarray:
    """The scene as a 64x64x3 uint8 RGB array; ``seed`` draws the jitter."""
    rng = random.Random(seed)
    background = BACKGROUND_RGB[scene.background or "gray"]
    canvas = np.empty((SIZE * SCALE, SIZE * SCALE, 3), dtype=np.float64)
    canvas[:] = background
    for obj in scene.objects:
        _draw(canvas, obj, background, rng)
    small = cv2.resize(canvas, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return np.clip(np.round(small), 0, 255).astype(np.uint8)
