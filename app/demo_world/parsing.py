"""Parsing a caption (Chinese or English, free phrasing) back into the scene it asks for."""

from __future__ import annotations

import re

from app.demo_world.scenes import (
    Scene,
    SceneObject,
)
from app.demo_world.vocabulary import (
    ALL_COLOURS,
    BACKGROUNDS,
    COLOUR_EN,
    COLOUR_ZH,
    POSITION_EN,
    POSITION_ZH,
    SHAPE_EN,
    SHAPE_ZH,
    SIZE_EN,
    SIZE_ZH,
    STYLE_EN,
    STYLE_ZH,
)


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
        if not isinstance(shape, str) or not isinstance(colour, str) or colour not in ALL_COLOURS:
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
