"""Content integrity: how well the scene an image shows matches the scene its caption asks for."""

from __future__ import annotations

from dataclasses import dataclass

from app.demo_world.scenes import (
    Scene,
    SceneObject,
)


@dataclass(frozen=True)
class IntegrityReport:
    """How well what a checker saw matches what a caption asked for.

    ``score`` in [0, 1]: each asked object is paired with the seen object that matches most of its
    stated attributes (shape, colour, and position, size and styles where stated); an object scores
    the share of its attributes that match; the score is the mean over asked objects (and the
    background when stated), scaled by ``asked / max(asked, seen)`` so extra objects cost.
    ``exact``: every stated attribute matches and nothing extra was seen.
    """

    score: float
    exact: bool
    matched: tuple[SceneObject | None, ...]


@dataclass(frozen=True)
class SceneReading:
    """What a checker saw in an image and, when a caption was given, how it matches the caption."""

    seen: Scene
    asked: Scene | None = None
    integrity: IntegrityReport | None = None


def _attributes(obj: SceneObject) -> list[str]:
    names = ["shape", "colour"]
    names += [n for n in ("position", "size") if getattr(obj, n) is not None]
    return names


def _object_score(asked: SceneObject, seen: SceneObject) -> float:
    names = _attributes(asked)
    hits = sum(bool(getattr(asked, n) == getattr(seen, n)) for n in names)
    total = len(names) + len(asked.styles)
    hits += sum(style in seen.styles for style in asked.styles)
    return hits / total


def integrity(asked: Scene, seen: Scene) -> IntegrityReport:
    remaining = list(seen.objects)
    matched: list[SceneObject | None] = []
    scores: list[float] = []
    for obj in asked.objects:
        if not remaining:
            matched.append(None)
            scores.append(0.0)
            continue
        best = max(remaining, key=lambda s: _object_score(obj, s))
        remaining.remove(best)
        matched.append(best)
        scores.append(_object_score(obj, best))
    if asked.background is not None:
        scores.append(float(seen.background == asked.background))
    n_asked, n_seen = len(asked.objects), len(seen.objects)
    score = sum(scores) / len(scores) * n_asked / max(n_asked, n_seen)
    exact = n_seen == n_asked and all(s == 1.0 for s in scores)
    return IntegrityReport(score=score, exact=exact, matched=tuple(matched))
