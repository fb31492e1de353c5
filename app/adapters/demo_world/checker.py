"""Read a demo-world image back into a :class:`~app.demo_world.scenes.Scene` with OpenCV and numpy (no learned weights).

The reader inverts ``render.py``: a flat background, one or two anti-aliased shapes in fixed colours, optionally with
an outline, a vertical gradient or a faint drop shadow. Images of another size are first area-resized to 64x64.
Every threshold below is in 0-255 RGB units or in pixels of the 64x64 canvas.

Background.
    The median colour of the 2-px border, named after the nearest entry of ``BACKGROUND_RGB`` when within
    ``BACKGROUND_SNAP`` (45; the four backgrounds are at least 120 apart), else ``None``. Segmentation always uses the
    median found, so a generated image whose background is a little off still segments against its own colour.

Foreground.
    A shadow is the background mixed 22% towards black (18% towards white on a dark background), so every pixel of
    the background, of a shadow or of the soft edge between them lies on the segment from the background colour to
    its shadow colour. The *residual* of a pixel is its RGB distance from that segment: 0 for background and shadow,
    at least 65 for every fill colour and every shade of a gradient fill (a visible outline: at least 129), with one
    exception below. Pixels with a residual above ``SEED_LEVEL`` (30, about half the weakest fill) are object seeds;
    shadows are excluded by construction, outlines included. (A per-channel threshold on the difference from the
    background fails here: a purple gradient on gray dips to 51, below any threshold that also rejects the white
    background's shadow at 54.)

    The exception is a *black gradient* on gray: its light top end (102) is the gray shadow colour (100). Pixels that
    look like shadow (more than ``WEAK_T`` = 0.7 of the way to the shadow colour) but are not where a shadow of a
    seed could be (2 px below-right of one, the render's offset), lie above a seed (within 6 px) and form a band at
    least 2 px thick are kept as possible object pixels; they join a component only if its seeds read black. Such
    black components then measure edges by plain distance from the background instead of the residual.

    Connected components (8-connectivity, holes filled, at least ``MIN_AREA`` = 12 px so noise is ignored, and with
    at least ``STRONG_MIN`` = 6 px of residual above ``STRONG_LEVEL`` = 55, so that the faint stains and halos a
    generative model leaves in a flat background are not counted as shapes) are the objects. Two shapes that touch
    (a large heart's tip can reach a small shape in the next cell) are split by eroding the component until it
    falls apart into cores of at least 6 px, each pixel going to the nearest core, when each part keeps at least
    30 px (the smallest shape covers about 60).

Outline of each object, sub-pixel.
    The residual divided by the local contrast (the largest residual of the object within 2 px, capped by the 75th
    percentile of its 2-px rim) is an estimate of coverage; it is set to 1 inside the object (one erosion in), upsampled
    4x with bilinear interpolation and thresholded at 0.5, so the contour sits at half coverage whatever the contrast
    of the fill or of an outline, also after a mild blur. Its external contour gives all geometric features.

Shape.
    Scale-free features of the contour: area over the minimum-area rectangle (square 0.98, circle 0.79, triangle 0.58,
    star 0.51, heart 0.73), over the minimum enclosing circle, over the minimum enclosing triangle (triangle 0.93),
    over the convex hull (star 0.70, others above 0.93), the vertical offset of the centroid within the bounding box
    (triangle +0.13, heart -0.09) and the aspect ratio. The shape is the most likely one under a per-shape diagonal
    Gaussian (``PROTOTYPES``), calibrated by :func:`calibrate` on clean, blurred and blurred-and-noisy renders.

Colour.
    Each interior pixel (at least 2.5 px from the edge, or the deepest pixels of a thin shape) is given the colour
    whose fill, or whose gradient ramp from 35% lighter to 30% darker, is nearest in RGB; votes are weighted by the
    squared depth so outlines and anti-aliased rims cannot outvote the fill.

Position and size.
    The contour's centroid on the 3x3 grid, boundaries at 21.5 and 42.5. The size comes from the radius estimate
    ``extent / EXTENT_PER_RADIUS[shape]`` (extent = the larger side of the bounding box), less ``OUTLINE_EXTENT`` when
    a visible outline adds to the extent. Rendered radii are 9.5-10.5 (large) and 6-7 (small); estimated ones span
    about 5-7.5 and 8.6-11.3 (clean and blurred), so the threshold is 7.8, but 7.4 for stars and triangles: an
    outline in the background's own colour (dark on black, light on white) is invisible and eats their sharp tips.

Styles (best effort).
    ``outline``: at least 35% of the 2-px rim is darker (or, for a black fill, lighter) than both the fill and the
    background by 20 and is no mix of the two; ``gradient``: the fill darkens by more than 35 from top to bottom;
    ``shadow``: shadow-coloured pixels 2 px outside the shape below-right outweigh those above-left (soft edges are
    symmetric, a shadow is not) by 0.15 per pixel of extent. An outline in the background's colour cannot be seen.

The reader is one algorithm, stage by stage, so it stays in one module; ``ground_truth.py`` measures it against the
renderer and re-derives its calibrated constants (docs/generation.md has its accuracy and speed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from app.adapters.demo_world.render import BACKGROUND_RGB, RGB, SIZE
from app.demo_world.integrity import IntegrityReport, integrity
from app.demo_world.parsing import parse_caption
from app.demo_world.scenes import Scene, SceneObject, position_at
from app.demo_world.vocabulary import ALL_COLOURS, COLOURS, SHAPES
from app.ports.generation import RgbImage
from app.ports.scenes import SceneReader

BORDER = 2  # px of the image edge whose median colour is the background
BACKGROUND_SNAP = 45.0  # RGB distance within which the background is named
SEED_LEVEL = 30.0  # residual from the background-shadow segment that marks an object pixel
WEAK_T = 0.7  # fraction of the way from background to shadow colour beyond which a pixel looks like shadow
MIN_AREA = 12  # px; smaller components are noise
STRONG_LEVEL = 55.0  # residual of a solid fill (every fill is at least 65 away) ...
STRONG_MIN = 6  # ... that at least this many px of a component must reach: faint stains are no objects
UP = 4  # upsampling of the coverage map for sub-pixel contours
SPLIT_MIN_CORE = 6  # px of an eroded core that counts as a separate shape
SPLIT_MIN_PART = 30  # px each part of a split must keep
GRID = (21.5, 42.5)  # boundaries of the 3x3 grid (cell centres at 11, 32 and 53)
DARK_LINE = np.array((25.0, 25.0, 25.0))
LIGHT_LINE = np.array((235.0, 235.0, 235.0))
KERNEL = np.ones((3, 3), np.uint8)
LOCAL = np.ones((5, 5), np.uint8)

FEATURES = ("rect", "circle", "tri", "solid", "vcent", "aspect")
# (means, standard deviations) of FEATURES per shape, from ``ground_truth.calibrate(1500, 1)``.
PROTOTYPES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "circle": ((0.7893, 0.9286, 0.6073, 0.9826, -0.007, 0.9982), (0.0116, 0.0277, 0.0084, 0.0044, 0.0075, 0.0267)),
    "square": ((0.9756, 0.7002, 0.538, 0.9913, -0.0089, 1.0018), (0.0218, 0.0275, 0.0137, 0.0103, 0.0043, 0.0225)),
    "triangle": ((0.5759, 0.4975, 0.9261, 0.9605, 0.128, 1.1167), (0.0301, 0.0351, 0.0294, 0.0137, 0.0145, 0.034)),
    "star": ((0.5098, 0.5408, 0.4108, 0.7042, 0.0377, 1.0358), (0.0475, 0.0528, 0.0363, 0.0578, 0.0106, 0.0332)),
    "heart": ((0.7276, 0.6566, 0.7239, 0.9348, -0.0925, 1.1855), (0.025, 0.0268, 0.0157, 0.0156, 0.0119, 0.0563)),
}
# Bounding-box extent over drawn radius per shape, from ``ground_truth.calibrate(1500, 1)``.
EXTENT_PER_RADIUS: dict[str, float] = {
    "circle": 2.035,
    "square": 1.795,
    "triangle": 1.913,
    "star": 2.04,
    "heart": 2.112,
}
OUTLINE_EXTENT = 2.0  # px a visible outline adds to the extent (about 1 px each side)
LARGE_RADIUS = {"circle": 7.8, "square": 7.8, "triangle": 7.4, "star": 7.4, "heart": 7.8}


def _mix(colour: np.ndarray, towards: float, amount: float) -> np.ndarray:
    return colour + (towards - colour) * amount


def _shadow_of(background: np.ndarray) -> np.ndarray:
    """The colour the renderer gives a shadow on ``background``."""
    return _mix(background, 0.0, 0.22) if float(background.sum()) > 150 else _mix(background, 255.0, 0.18)


_FILLS = {name: np.array(rgb, dtype=np.float64) for name, rgb in RGB.items()}
_RAMPS = {name: (_mix(c, 255.0, 0.35), _mix(c, 0.0, 0.3)) for name, c in _FILLS.items()}  # gradient top, bottom


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance of colours ``p`` (..., 3) from the segment a-b, and the clipped position along it (0 at a)."""
    d = b - a
    t = np.clip(((p - a) @ d) / float(d @ d), 0.0, 1.0)
    return np.linalg.norm(p - a - t[..., None] * d, axis=-1), t


def _colour_distances(pixels: np.ndarray) -> np.ndarray:
    """(n, len(ALL_COLOURS)): distance of each pixel from each colour's fill or gradient ramp."""
    out = np.empty((len(pixels), len(ALL_COLOURS)))
    for j, name in enumerate(ALL_COLOURS):
        ramp, _ = _segment_distance(pixels, *_RAMPS[name])
        out[:, j] = np.minimum(np.linalg.norm(pixels - _FILLS[name], axis=1), ramp)
    return out


def _majority_colour(pixels: np.ndarray, weights: np.ndarray | None = None) -> tuple[int, np.ndarray]:
    """Index in ALL_COLOURS of the weighted vote of ``pixels``, and each pixel's own nearest colour."""
    nearest = _colour_distances(pixels).argmin(axis=1)
    return int(np.bincount(nearest, weights=weights, minlength=len(ALL_COLOURS)).argmax()), nearest


def _background(img: np.ndarray) -> tuple[np.ndarray, str | None]:
    f = img.astype(np.float64)
    border = np.concatenate(
        [
            f[:BORDER].reshape(-1, 3),
            f[-BORDER:].reshape(-1, 3),
            f[:, :BORDER].reshape(-1, 3),
            f[:, -BORDER:].reshape(-1, 3),
        ]
    )
    median = np.median(border, axis=0)
    name = min(BACKGROUND_RGB, key=lambda n: float(np.linalg.norm(median - np.array(BACKGROUND_RGB[n]))))
    if np.linalg.norm(median - np.array(BACKGROUND_RGB[name])) > BACKGROUND_SNAP:
        return median, None
    return median, name


def _shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``mask`` moved down by ``dy`` and right by ``dx`` pixels (negative: up, left), padded with False."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = mask[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def _open2(mask: np.ndarray) -> np.ndarray:
    """Morphological opening with a 2x2 square: the parts of ``mask`` at least 2 px thick."""
    core = mask[:-1, :-1] & mask[1:, :-1] & mask[:-1, 1:] & mask[1:, 1:]
    out = np.zeros_like(mask)
    out[:-1, :-1] |= core
    out[1:, :-1] |= core
    out[:-1, 1:] |= core
    out[1:, 1:] |= core
    return out


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros(mask.shape, np.uint8)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled > 0


def _split(region: np.ndarray) -> list[np.ndarray]:
    """Touching shapes: erode until the region falls apart into solid cores, then give each pixel to the nearest."""
    u8 = region.astype(np.uint8)
    for iterations in (1, 2):
        core = cv2.erode(u8, KERNEL, iterations=iterations)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(core, connectivity=8)
        cores = [k for k in range(1, n) if stats[k, cv2.CC_STAT_AREA] >= SPLIT_MIN_CORE]
        if len(cores) < 2:
            continue
        nearest = np.stack(
            [cv2.distanceTransform((labels != k).astype(np.uint8), cv2.DIST_L2, 3) for k in cores]
        ).argmin(axis=0)
        parts = [region & (nearest == i) for i in range(len(cores))]
        if all(int(part.sum()) >= SPLIT_MIN_PART for part in parts):
            return parts
    return [region]


def _shadow_score(region: np.ndarray, shade: np.ndarray) -> float:
    """Shadow-coloured mass 2 px outside the region below-right, less that above-left (soft edges are symmetric)."""
    u8 = region.astype(np.uint8)
    ring = (cv2.dilate(u8, KERNEL, iterations=2) > 0) & ~(cv2.dilate(u8, KERNEL) > 0)
    return float(shade[ring & _shift(region, 2, 2)].sum() - shade[ring & _shift(region, -2, -2)].sum())


def _features(mask4: np.ndarray) -> dict[str, float] | None:
    """Geometry of the largest external contour of a 4x mask, in pixels of the 64x64 canvas."""
    contours, _ = cv2.findContours(mask4, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    contour = max(contours, key=cv2.contourArea)
    area = float(cv2.contourArea(contour))
    if area < MIN_AREA * UP * UP / 2:
        return None
    _, (rect_w, rect_h), _ = cv2.minAreaRect(contour)
    _, radius = cv2.minEnclosingCircle(contour)
    hull = cv2.convexHull(contour)
    triangle_area, _ = cv2.minEnclosingTriangle(hull)
    _, y, w, h = cv2.boundingRect(contour)
    m = cv2.moments(contour)
    cx, cy = m["m10"] / m["m00"], m["m01"] / m["m00"]
    return {
        "rect": area / max(rect_w * rect_h, 1e-6),
        "circle": area / (math.pi * radius * radius),
        "tri": area / max(float(triangle_area), 1e-6),
        "solid": area / max(float(cv2.contourArea(hull)), 1e-6),
        "vcent": (cy - (y + h / 2)) / h,
        "aspect": w / h,
        "extent": max(w, h) / UP,
        "area": area / UP / UP,
        "cx": (cx + 0.5) / UP,
        "cy": (cy + 0.5) / UP,
    }


@dataclass
class Blob:
    """One object found by :func:`segment`, before it is described."""

    region: np.ndarray  # bool, 64x64: the object's pixels, holes filled
    shadow: float  # _shadow_score
    features: dict[str, float]


def segment(img: np.ndarray) -> tuple[np.ndarray, str | None, list[Blob]]:
    """(background colour, background name or None, objects) of a 64x64 RGB image: the reader's first stage."""
    f = img.astype(np.float64)
    background, name = _background(img)
    resid, t = _segment_distance(f, background, _shadow_of(background))
    seed = resid > SEED_LEVEL
    shadowish = (t > WEAK_T) & ~seed
    can_be_shadow = cv2.dilate(_shift(seed, 2, 2).astype(np.uint8), KERNEL) > 0
    above_seed = np.zeros_like(seed)
    for k in range(1, 7):
        above_seed[:-k] |= seed[k:]
    weak = _open2(shadowish & ~can_be_shadow & above_seed)  # the light top of a black gradient, perhaps
    shade = np.where((resid < 20) & ~weak, t, 0.0)

    black = COLOURS.index("black")
    regions: list[tuple[np.ndarray, bool]] = []
    n, labels = cv2.connectedComponents((seed | weak).astype(np.uint8), connectivity=8)
    for k in range(1, n):
        component = labels == k
        core = component & seed
        if int(component.sum()) < MIN_AREA or int((component & (resid > STRONG_LEVEL)).sum()) < STRONG_MIN:
            continue
        is_black = _majority_colour(f[core])[0] == black
        regions += [(part, is_black) for part in _split(_fill_holes(component if is_black else core))]
    taken = np.zeros(seed.shape, dtype=bool)
    for region, _ in regions:
        taken |= region

    plain = np.linalg.norm(f - background, axis=2)
    blobs: list[Blob] = []
    for region, is_black in regions:
        u8 = region.astype(np.uint8)
        strength = np.where(shadowish & can_be_shadow, resid, plain) if is_black else resid
        rim = region & ~(cv2.erode(u8, KERNEL, iterations=2) > 0)
        cap = float(np.percentile(strength[rim], 75)) if rim.any() else SEED_LEVEL
        local = np.minimum(cv2.dilate(np.where(region, strength, 0.0).astype(np.float32), LOCAL), cap)
        coverage = np.minimum(strength / np.maximum(local, SEED_LEVEL), 1.0)
        coverage[cv2.erode(u8, KERNEL) > 0] = 1.0
        near = (cv2.dilate(u8, KERNEL) > 0) & ~(taken & ~region)
        coverage = np.where(near, coverage, 0.0).astype(np.float32)
        big = cv2.resize(coverage, (img.shape[1] * UP, img.shape[0] * UP), interpolation=cv2.INTER_LINEAR)
        features = _features((big > 0.5).astype(np.uint8))
        if features is not None:
            blobs.append(Blob(region=region, shadow=_shadow_score(region, shade), features=features))
    return background, name, blobs


def _shape(features: dict[str, float]) -> str:
    x = np.array([features[k] for k in FEATURES])

    def log_likelihood(shape: str) -> float:
        mean, std = (np.array(v) for v in PROTOTYPES[shape])
        return float(-0.5 * (((x - mean) / std) ** 2).sum() - np.log(std).sum())

    return max(SHAPES, key=log_likelihood)


def _fill_by_row(f: np.ndarray, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares fill colour as a linear function of the row: (RGB change per row, RGB at row 0)."""
    ys = np.nonzero(pixels)[0].astype(np.float64)
    colours = f[pixels]
    if len(np.unique(ys)) < 2:
        return np.zeros(3), colours.mean(axis=0)
    coef = np.linalg.lstsq(np.stack([ys, np.ones_like(ys)], axis=1), colours, rcond=None)[0]
    return coef[0], coef[1]


def _has_outline(f: np.ndarray, depth: np.ndarray, fill_pixels: np.ndarray, colour: str, bg: np.ndarray) -> bool:
    dark = sum(RGB[colour]) >= 150  # the renderer's rule: dark line, light on dark fills
    line = DARK_LINE if dark else LIGHT_LINE
    if np.linalg.norm(bg - line) <= 40:
        return False  # a line of the background's colour cannot be seen
    ys, xs = np.nonzero((depth > 0) & (depth <= 2.0))
    if len(ys) == 0:
        return False
    slope, intercept = _fill_by_row(f, fill_pixels)
    rim = f[ys, xs]
    fill = ys[:, None] * slope + intercept
    if dark:
        beyond = rim.max(axis=1) < np.minimum(fill.max(axis=1), bg.max()) - 20
    else:
        beyond = rim.min(axis=1) > np.maximum(fill.min(axis=1), bg.min()) + 20
    towards = fill - bg
    t = np.clip(((rim - bg) * towards).sum(axis=1) / np.maximum((towards * towards).sum(axis=1), 1e-6), 0.0, 1.0)
    unmixed = np.linalg.norm(rim - bg - t[:, None] * towards, axis=1) > 30  # no mix of fill and background
    return float((beyond & unmixed).mean()) > 0.35


def _grid(coordinate: float) -> int:
    return int(coordinate >= GRID[0]) + int(coordinate >= GRID[1])


def _describe(img: np.ndarray, blob: Blob, background: np.ndarray) -> SceneObject:
    f = img.astype(np.float64)
    depth = cv2.distanceTransform(np.pad(blob.region.astype(np.uint8), 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    interior = depth >= min(2.5, float(depth.max()))
    best, nearest = _majority_colour(f[interior], weights=depth[interior] ** 2)
    colour = ALL_COLOURS[best]
    fill_pixels = interior.copy()
    fill_pixels[interior] = nearest == best  # not the interior pixels of an outline
    outline = _has_outline(f, depth, fill_pixels, colour, background)
    extent = blob.features["extent"]
    styles = []
    if outline:
        styles.append("outline")
    if float(_fill_by_row(f, fill_pixels)[0].mean()) * extent < -35:
        styles.append("gradient")
    if blob.shadow >= 0.15 * extent:
        styles.append("shadow")
    shape = _shape(blob.features)
    radius = (extent - (OUTLINE_EXTENT if outline else 0.0)) / EXTENT_PER_RADIUS[shape]
    return SceneObject(
        shape=shape,
        colour=colour,
        position=position_at(_grid(blob.features["cy"]), _grid(blob.features["cx"])),
        size="large" if radius >= LARGE_RADIUS[shape] else "small",
        styles=tuple(styles),
    )


def _as_rgb(image: object) -> np.ndarray:
    """A 64x64x3 uint8 RGB array from an ``RgbImage``, an RGB(A)/gray array of any size or a PIL image."""
    if isinstance(image, RgbImage):
        image = np.frombuffer(image.rgb, dtype=np.uint8).reshape(image.height, image.width, 3)
    if not isinstance(image, np.ndarray):
        convert = getattr(image, "convert", None)
        if convert is None:
            raise TypeError(f"not an image: {type(image).__name__}")
        image = np.asarray(convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or min(arr.shape[:2]) < 1:
        raise ValueError(f"not an RGB image: shape {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = np.clip(np.round(arr), 0, 255).astype(np.uint8)
    if arr.shape[:2] != (SIZE, SIZE):
        arr = cv2.resize(arr, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(arr)


class OpenCvSceneReader(SceneReader):
    """Reads shapes, colours, positions, sizes, styles and the background of a demo-world image."""

    def read(self, image: object) -> Scene:
        """The scene in ``image`` (an ``RgbImage``, HxWx3 uint8 RGB, or a PIL image): objects by area, largest
        first."""
        img = _as_rgb(image)
        background, name, blobs = segment(img)
        blobs.sort(key=lambda blob: -blob.features["area"])
        return Scene(objects=tuple(_describe(img, blob, background) for blob in blobs), background=name)

    def score(self, image: object, caption: str) -> IntegrityReport:
        """How well ``image`` shows what ``caption`` asks for; a caption without a coloured shape raises ValueError."""
        return integrity(parse_caption(caption), self.read(image))
