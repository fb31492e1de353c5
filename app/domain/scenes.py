"""The demo world: scenes of one or two coloured shapes, their captions and how they are checked.

A scene is what the project's own text-to-image model learns to draw and what its checker reads back.
Everything here is pure policy: the vocabulary (Chinese and English), sampling of scenes with a
held-out set of attribute combinations, captions with varied phrasing, parsing a caption back into
the scene it asks for, and the content-integrity score of what was seen against what was asked.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field, replace

SHAPES = ("circle", "square", "triangle", "star", "heart")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "black", "white")
# Row-major 3x3 grid.
POSITIONS = (
    "top-left",
    "top",
    "top-right",
    "left",
    "center",
    "right",
    "bottom-left",
    "bottom",
    "bottom-right",
)
SIZES = ("large", "small")
BACKGROUNDS = ("gray", "white", "black", "blue")
STYLES = ("outline", "gradient", "shadow")
DEFAULT_BACKGROUND = "gray"

# The first word of each tuple is the canonical one used by render-time captions in tests.
SHAPE_ZH = {
    "circle": ("圆形", "圆圈", "圆"),
    "square": ("正方形", "方形", "方块"),
    "triangle": ("三角形", "三角"),
    "star": ("星形", "五角星", "星星"),
    "heart": ("心形", "爱心"),
}
COLOUR_ZH = {
    "red": "红",
    "orange": "橙",
    "yellow": "黄",
    "green": "绿",
    "blue": "蓝",
    "purple": "紫",
    "black": "黑",
    "white": "白",
    "gray": "灰",
}
POSITION_ZH = {
    "top-left": ("左上", "左上角", "左上方"),
    "top": ("中上", "上方", "顶部"),
    "top-right": ("右上", "右上角", "右上方"),
    "left": ("左中", "左边", "左侧"),
    "center": ("中间", "中央", "正中间"),
    "right": ("右中", "右边", "右侧"),
    "bottom-left": ("左下", "左下角", "左下方"),
    "bottom": ("中下", "下方", "底部"),
    "bottom-right": ("右下", "右下角", "右下方"),
}
SIZE_ZH = {"large": "大", "small": "小"}
STYLE_ZH = {"outline": ("描边", "轮廓线"), "gradient": ("渐变",), "shadow": ("阴影", "投影")}

SHAPE_EN = {name: (name,) for name in SHAPES}
POSITION_EN = {
    "top-left": ("top left", "upper left"),
    "top": ("top", "top center"),
    "top-right": ("top right", "upper right"),
    "left": ("left", "middle left"),
    "center": ("center", "middle"),
    "right": ("right", "middle right"),
    "bottom-left": ("bottom left", "lower left"),
    "bottom": ("bottom", "bottom center"),
    "bottom-right": ("bottom right", "lower right"),
}
SIZE_EN = {"large": ("big", "large"), "small": ("small", "little")}
STYLE_EN = {"outline": ("outlined", "outline"), "gradient": ("gradient",), "shadow": ("shadowed", "shadow")}
COLOUR_EN = {name: (name, "grey") if name == "gray" else (name,) for name in (*COLOURS, "gray")}


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
        if self.colour not in COLOURS:
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
    if obj.position is None:
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
    background_weights: dict[str, float] = field(
        default_factory=lambda: {"gray": 0.55, "white": 0.15, "black": 0.15, "blue": 0.15}
    )

    def _object(self, background: str, taken: list[str], held_out: bool | None) -> SceneObject:
        while True:
            colour = self.rng.choice(COLOURS)
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


# ---------------------------------------------------------------- parsing


def _lexicon() -> list[tuple[str, str, str]]:
    entries: list[tuple[str, str, str]] = []
    for name, words in SHAPE_ZH.items():
        entries += [(w, "shape", name) for w in words]
    for name, word in COLOUR_ZH.items():
        entries += [(word + "色", "colour", name), (word, "colour", name)]
    for name, words in POSITION_ZH.items():
        entries += [(w, "position", name) for w in words]
    entries += [("正中", "position", "center"), ("中心", "position", "center")]
    for name, word in SIZE_ZH.items():
        entries.append((word, "size", name))
    for name, words in STYLE_ZH.items():
        entries += [(w, "style", name) for w in words]
    for name, words in SHAPE_EN.items():
        entries += [(w, "shape", name) for w in words] + [(w + "s", "shape", name) for w in words]
    for name, words in COLOUR_EN.items():
        entries += [(w, "colour", name) for w in words]
    for name, words in POSITION_EN.items():
        entries += [(w, "position", name) for w in words]
    for name, words in SIZE_EN.items():
        entries += [(w, "size", name) for w in words]
    for name, words in STYLE_EN.items():
        entries += [(w, "style", name) for w in words]
    entries += [("背景", "background", ""), ("底", "background", ""), ("background", "background", "")]
    return sorted(entries, key=lambda e: -len(e[0]))


_LEXICON = _lexicon()
_CLAUSE_SPLIT = re.compile(r"[，,。；;\n]|和|还有|以及|\band\b|\bwith\b")


def _scan(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        for word, kind, value in _LEXICON:
            if not text.startswith(word, i):
                continue
            if word.isascii() and (
                (i > 0 and text[i - 1].isalpha()) or (i + len(word) < len(text) and text[i + len(word)].isalpha())
            ):
                continue
            found.append((kind, value))
            i += len(word)
            break
        else:
            i += 1
    return found


def parse_caption(text: str) -> Scene:
    """The scene a caption asks for: objects in order of mention; unstated attributes are None.

    Clauses are split at punctuation (not 、, which lists styles) and at 和/还有/and. A clause with a
    shape word starts an object; colour, size, position and style words in a clause without a shape
    belong to the previous object (``红色圆形，大，位于左上``); a clause with 背景/底/background
    names the background colour.
    Raises ``ValueError`` when the text names no shape with a colour.
    """
    text = text.lower()
    objects: list[dict[str, object]] = []
    background: str | None = None
    for clause in _CLAUSE_SPLIT.split(text):
        tokens = _scan(clause)
        if not tokens:
            continue
        if any(kind == "background" for kind, _ in tokens):
            colours = [v for k, v in tokens if k == "colour"]
            shapes = [v for k, v in tokens if k == "shape"]
            if colours and not shapes:
                background = colours[-1]
                continue
        shapes = [v for k, v in tokens if k == "shape"]
        if shapes or not objects:
            objects.append({"styles": []})
        target = objects[-1]
        for kind, value in tokens:
            if kind == "style":
                styles = target["styles"]
                assert isinstance(styles, list)
                if value not in styles:
                    styles.append(value)
            elif kind in ("shape", "colour", "position", "size") and kind not in target:
                target[kind] = value
    result = []
    for attrs in objects:
        shape, colour = attrs.get("shape"), attrs.get("colour")
        if not isinstance(shape, str) or not isinstance(colour, str) or colour not in COLOURS:
            continue
        position, size, styles = attrs.get("position"), attrs.get("size"), attrs.get("styles")
        result.append(
            SceneObject(
                shape=shape,
                colour=colour,
                position=position if isinstance(position, str) else None,
                size=size if isinstance(size, str) else None,
                styles=tuple(styles) if isinstance(styles, list) else (),
            )
        )
    if not result:
        raise ValueError(f"no coloured shape in {text!r}")
    if background is not None and background not in BACKGROUNDS:
        background = None
    return Scene(objects=tuple(result), background=background)


# ---------------------------------------------------------------- content integrity


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
