"""Scenes of the demo world: one or two coloured shapes on a background, sampled with a held-out set of
attribute combinations, and written as captions with varied Chinese or English phrasing.

A scene is what the project's own text-to-image model learns to draw and what its checker reads back.
Parsing a caption back into its scene is in ``parsing``, the content-integrity score in ``integrity``."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from app.demo_world.vocabulary import (
    ALL_COLOURS,
    BACKGROUNDS,
    COLOUR_EN,
    COLOUR_ZH,
    COLOURS,
    DEFAULT_BACKGROUND,
    POSITION_EN,
    POSITION_ZH,
    POSITIONS,
    SHAPE_EN,
    SHAPE_ZH,
    SHAPES,
    SIZE_EN,
    SIZE_ZH,
    SIZES,
    STYLE_EN,
    STYLE_ZH,
    STYLES,
)


@dataclass(frozen=True)
class SceneObject:
    """One shape. ``position`` and ``size`` may be None in a parsed caption that does not say them."""

    shape: str
    colour: str
    position: str | None = None
    size: str | None = None
    styles: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}")
        if self.colour not in ALL_COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}")
        if self.position is not None and self.position not in POSITIONS:
            raise ValueError(f"unknown position {self.position!r}")
        if self.size is not None and self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}")
        if any(style not in STYLES for style in self.styles):
            raise ValueError(f"unknown style in {self.styles!r}")


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    background: str | None = DEFAULT_BACKGROUND

    def __post_init__(self) -> None:
        if self.background is not None and self.background not in BACKGROUNDS:
            raise ValueError(f"unknown background {self.background!r}")

    def without_styles(self) -> Scene:
        """The same scene with no style on any object (for comparisons that leave styles out)."""
        return Scene(tuple(replace(o, styles=()) for o in self.objects), self.background)


def cell(position: str) -> tuple[int, int]:
    """(row, column) of a grid position."""
    index = POSITIONS.index(position)
    return index // 3, index % 3


def position_at(row: int, column: int) -> str:
    return POSITIONS[row * 3 + column]


def is_held_out(obj: SceneObject) -> bool:
    """A fixed tenth of the (colour, shape, position) combinations never appears in training scenes.

    The rule covers every colour, shape and position (36 of the 360 triples), so the held-out
    prompts measure composition of attributes the model has seen, never an unseen word.
    """
    if obj.position is None or obj.colour not in COLOURS:
        return False
    c, s, p = COLOURS.index(obj.colour), SHAPES.index(obj.shape), POSITIONS.index(obj.position)
    return (3 * c + 7 * s + p) % 10 == 0


def _adjacent(a: str, b: str) -> bool:
    (ra, ca), (rb, cb) = cell(a), cell(b)
    return abs(ra - rb) + abs(ca - cb) == 1


@dataclass
class SceneSampler:
    """Random scenes, drawn from ``split`` "train" (no held-out combination) or "heldout"
    (every single object, and at least one of two, is a held-out combination)."""

    rng: random.Random
    split: str = "train"
    two_object_rate: float = 0.4
    style_rate: float = 0.15
    colours: tuple[str, ...] = COLOURS
    background_weights: dict[str, float] = field(
        default_factory=lambda: {"gray": 0.55, "white": 0.15, "black": 0.15, "blue": 0.15}
    )

    def _object(self, background: str, taken: list[str], held_out: bool | None) -> SceneObject:
        while True:
            colour = self.rng.choice(self.colours)
            if colour == background:
                continue
            obj = SceneObject(
                shape=self.rng.choice(SHAPES),
                colour=colour,
                position=self.rng.choice([p for p in POSITIONS if p not in taken]),
                size=self.rng.choice(SIZES),
                styles=tuple(s for s in STYLES if self.rng.random() < self.style_rate),
            )
            if held_out is None or is_held_out(obj) == held_out:
                return obj

    def sample(self, n_objects: int | None = None) -> Scene:
        names = list(self.background_weights)
        background = self.rng.choices(names, weights=[self.background_weights[n] for n in names])[0]
        if n_objects is None:
            n_objects = 2 if self.rng.random() < self.two_object_rate else 1
        first_held = None if self.split == "heldout" and n_objects == 2 else (self.split == "heldout")
        if self.split == "train":
            first_held = False
        first = self._object(background, [], first_held)
        objects = [first]
        if n_objects == 2:
            second_held: bool | None = False if self.split == "train" else None
            if self.split == "heldout" and not is_held_out(first):
                second_held = True
            while True:
                second = self._object(background, [first.position or ""], second_held)
                assert first.position is not None and second.position is not None
                if first.size == second.size == "large" and _adjacent(first.position, second.position):
                    continue  # two large shapes side by side would touch
                objects.append(second)
                break
        return Scene(objects=tuple(objects), background=background)


# ---------------------------------------------------------------- captions


def _zh_object(obj: SceneObject, rng: random.Random, with_size: bool) -> tuple[str, str]:
    """(noun phrase, position word) for one object."""
    colour = COLOUR_ZH[obj.colour] + rng.choice(("色", "色", ""))
    shape = rng.choice(SHAPE_ZH[obj.shape])
    size = SIZE_ZH[obj.size] if with_size and obj.size else ""
    styles = [rng.choice(STYLE_ZH[s]) for s in obj.styles]
    style_prefix = ""
    if styles:
        style_prefix = rng.choice(("带", "有")) + "、".join(styles) + "的"
    if rng.random() < 0.5:
        phrase = f"{style_prefix}{size}{colour}{'的' if colour.endswith('色') and not size else ''}{shape}"
    else:
        phrase = f"{style_prefix}{colour}{'的' if colour.endswith('色') else ''}{size}{shape}"
    return phrase, rng.choice(POSITION_ZH[obj.position]) if obj.position else ""


def _zh_clause(obj: SceneObject, rng: random.Random, with_size: bool) -> str:
    phrase, where = _zh_object(obj, rng, with_size)
    count = rng.choice(("一个", "一个", ""))
    if not where:
        return f"{count}{phrase}"
    template = rng.randrange(4)
    if template == 0:
        return f"{count}{phrase}在{where}"
    if template == 1:
        return f"{where}有{count or '一个'}{phrase}"
    if template == 2:
        return f"{where}是{count}{phrase}"
    return f"{count}{phrase}位于{where}"


def _en_clause(obj: SceneObject, rng: random.Random, with_size: bool) -> str:
    words = [rng.choice(STYLE_EN[s]) for s in obj.styles]
    if with_size and obj.size:
        words.append(rng.choice(SIZE_EN[obj.size]))
    words += [obj.colour, rng.choice(SHAPE_EN[obj.shape])]
    phrase = "a " + " ".join(words)
    if obj.position:
        where = rng.choice(POSITION_EN[obj.position])
        phrase += rng.choice((f" at the {where}", f" in the {where}", f" on the {where}"))
    return phrase


def caption(scene: Scene, rng: random.Random, language: str = "zh", size_rate: float = 0.85) -> str:
    """A caption of ``scene`` with randomly varied phrasing, word order and synonyms."""
    with_size = rng.random() < size_rate
    objects = list(scene.objects)
    if len(objects) == 2 and rng.random() < 0.5:
        objects.reverse()
    mention_bg = scene.background not in (None, DEFAULT_BACKGROUND) or rng.random() < 0.2
    if language == "en":
        text = " and ".join(_en_clause(o, rng, with_size) for o in objects)
        if mention_bg and scene.background:
            text += f", {COLOUR_EN[scene.background][0]} background"
        return text
    text = rng.choice(("，", "，", "和", "，还有")).join(_zh_clause(o, rng, with_size) for o in objects)
    if mention_bg and scene.background:
        colour = COLOUR_ZH[scene.background]
        text += rng.choice((f"，{colour}色背景", f"，背景是{colour}色", f"，{colour}底"))
    return text


def canonical_caption(scene: Scene) -> str:
    """The plainest Chinese caption, e.g. ``一个红色的大圆形在左上，蓝色背景``."""
    parts = []
    for obj in scene.objects:
        styles = "带" + "、".join(STYLE_ZH[s][0] for s in obj.styles) + "的" if obj.styles else ""
        size = SIZE_ZH[obj.size] if obj.size else ""
        where = f"在{POSITION_ZH[obj.position][0]}" if obj.position else ""
        parts.append(f"一个{styles}{COLOUR_ZH[obj.colour]}色的{size}{SHAPE_ZH[obj.shape][0]}{where}")
    text = "，".join(parts)
    if scene.background and scene.background != DEFAULT_BACKGROUND:
        text += f"，{COLOUR_ZH[scene.background]}色背景"
    return text
