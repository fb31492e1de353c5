"""Edit instructions of the demo world (把圆形换成蓝色, 加一个小三角形, 去掉星形, 背景改成白色, 更精致一些)
and the InstructPE-format records built from them.

An ``Instruction`` changes a scene: recolour, reshape, move or resize one object, add or remove an
object, change the background, or beautify (add a style: outline, gradient, shadow). ``apply`` gives the
scene the instruction asks for; ``phrase`` words an instruction in Chinese (or English) with varied
phrasing; ``parse_instruction`` reads one back against the scene it applies to (what the rule-based
rewriter does). ``instructpe_record`` builds DiffChat's training tuple ⟨source_prompt, instruction,
beautified_source_prompt, beautified_target_prompt⟩: the source prompt is a plain caption of a scene,
its beautified version the full caption of the same scene with a style added (what makes a demo-world
image more refined), the target the full caption of the beautified scene after the instruction.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, replace

from app.demo_world.parsing import parse_caption
from app.demo_world.scenes import Scene, SceneObject, canonical_caption, caption
from app.demo_world.vocabulary import (
    BACKGROUNDS,
    COLOUR_ZH,
    COLOURS,
    POSITION_EN,
    POSITION_ZH,
    POSITIONS,
    SHAPE_ZH,
    SHAPES,
    SIZE_ZH,
    STYLE_ZH,
    STYLES,
)

KINDS = ("recolour", "reshape", "move", "resize", "add", "remove", "background", "beautify")


@dataclass(frozen=True)
class Instruction:
    """``target`` picks the object (by shape, and colour when two objects share the shape); ``value`` is the
    new colour, shape, position, size, background or style; ``add`` carries the whole new object."""

    kind: str
    target: SceneObject | None = None
    value: str | None = None
    new: SceneObject | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown instruction kind {self.kind!r}")


def _find(scene: Scene, target: SceneObject | None) -> int:
    if target is None:
        raise ValueError("the instruction names no object")
    for i, obj in enumerate(scene.objects):
        if obj.shape == target.shape and (target.colour == obj.colour or _unique_shape(scene, obj.shape)):
            return i
    raise ValueError(f"the scene has no {target.colour} {target.shape}")


def _unique_shape(scene: Scene, shape: str) -> bool:
    return sum(o.shape == shape for o in scene.objects) == 1


def apply(scene: Scene, ins: Instruction) -> Scene:
    """The scene ``ins`` asks for. Raises ``ValueError`` when it does not apply (no such object, ...)."""
    objects = list(scene.objects)
    if ins.kind == "background":
        if ins.value not in BACKGROUNDS or any(o.colour == ins.value for o in objects):
            raise ValueError(f"cannot use background {ins.value!r} here")
        return Scene(tuple(objects), ins.value)
    if ins.kind == "beautify":
        if ins.value not in STYLES:
            raise ValueError(f"unknown style {ins.value!r}")
        styled = [replace(o, styles=o.styles if ins.value in o.styles else (*o.styles, ins.value)) for o in objects]
        return Scene(tuple(styled), scene.background)
    if ins.kind == "add":
        if ins.new is None or len(objects) >= 2 or any(o.position == ins.new.position for o in objects):
            raise ValueError("cannot add an object here")
        return Scene((*objects, ins.new), scene.background)
    i = _find(scene, ins.target)
    obj = objects[i]
    if ins.kind == "remove":
        if len(objects) < 2:
            raise ValueError("cannot remove the only object")
        return Scene(tuple(o for j, o in enumerate(objects) if j != i), scene.background)
    if ins.kind == "recolour":
        if ins.value not in COLOURS or ins.value in (obj.colour, scene.background):
            raise ValueError(f"cannot recolour to {ins.value!r}")
        objects[i] = replace(obj, colour=ins.value)
    elif ins.kind == "reshape":
        if ins.value not in SHAPES or ins.value == obj.shape:
            raise ValueError(f"cannot reshape to {ins.value!r}")
        objects[i] = replace(obj, shape=ins.value)
    elif ins.kind == "move":
        taken = {o.position for j, o in enumerate(objects) if j != i}
        if ins.value not in POSITIONS or ins.value == obj.position or ins.value in taken:
            raise ValueError(f"cannot move to {ins.value!r}")
        objects[i] = replace(obj, position=ins.value)
    elif ins.kind == "resize":
        if ins.value not in ("large", "small") or ins.value == obj.size:
            raise ValueError(f"cannot resize to {ins.value!r}")
        objects[i] = replace(obj, size=ins.value)
    return Scene(tuple(objects), scene.background)


def _name(scene: Scene, obj: SceneObject, rng: random.Random) -> str:
    shape = rng.choice(SHAPE_ZH[obj.shape])
    if _unique_shape(scene, obj.shape) and rng.random() < 0.6:
        return shape
    return f"{COLOUR_ZH[obj.colour]}{rng.choice(('色的', '色', ''))}{shape}"


def phrase(scene: Scene, ins: Instruction, rng: random.Random) -> str:
    """A Chinese wording of ``ins`` (varied templates and synonyms)."""
    if ins.kind == "background":
        colour = COLOUR_ZH[ins.value or ""]
        return rng.choice(
            (f"背景改成{colour}色", f"换成{colour}色背景", f"把背景换成{colour}色", f"背景变成{colour}色")
        )
    if ins.kind == "beautify":
        word = rng.choice(STYLE_ZH[ins.value or ""])
        return rng.choice((f"更精致一些，加上{word}", f"加一点{word}", f"给图形加上{word}", f"让它更好看，用{word}"))
    if ins.kind == "add":
        new = ins.new
        assert new is not None and new.position is not None and new.size is not None
        thing = f"{SIZE_ZH[new.size]}{COLOUR_ZH[new.colour]}色的{rng.choice(SHAPE_ZH[new.shape])}"
        where = rng.choice(POSITION_ZH[new.position])
        return rng.choice((f"加一个{thing}在{where}", f"在{where}加一个{thing}", f"{where}再放一个{thing}"))
    assert ins.target is not None
    name = _name(scene, scene.objects[_find(scene, ins.target)], rng)
    if ins.kind == "remove":
        return rng.choice((f"去掉{name}", f"把{name}删掉", f"不要{name}了"))
    if ins.kind == "recolour":
        colour = COLOUR_ZH[ins.value or ""]
        return rng.choice((f"把{name}换成{colour}色", f"把{name}改成{colour}色的", f"{name}变成{colour}色"))
    if ins.kind == "reshape":
        shape = rng.choice(SHAPE_ZH[ins.value or ""])
        return rng.choice((f"把{name}换成{shape}", f"把{name}变成{shape}", f"{name}改成{shape}"))
    if ins.kind == "move":
        where = rng.choice(POSITION_ZH[ins.value or ""])
        return rng.choice((f"把{name}移到{where}", f"把{name}放到{where}", f"{name}挪到{where}"))
    word = "大" if ins.value == "large" else "小"
    return rng.choice((f"把{name}变{word}", f"{name}{word}一点", f"把{name}放{word}一些"))


def phrase_en(scene: Scene, ins: Instruction) -> str:
    """A plain English wording (for the English rewriter and mixed-language tests)."""
    if ins.kind == "background":
        return f"make the background {ins.value}"
    if ins.kind == "beautify":
        return f"make it more refined with a {ins.value}"
    if ins.kind == "add":
        new = ins.new
        assert new is not None and new.position is not None
        return f"add a {new.size} {new.colour} {new.shape} at the {POSITION_EN[new.position][0]}"
    assert ins.target is not None
    name = f"the {ins.target.colour} {ins.target.shape}"
    verbs = {
        "remove": f"remove {name}",
        "recolour": f"make {name} {ins.value}",
        "reshape": f"turn {name} into a {ins.value}",
        "move": f"move {name} to the {POSITION_EN.get(ins.value or '', ('',))[0]}",
        "resize": f"make {name} {'bigger' if ins.value == 'large' else 'smaller'}",
    }
    return verbs[ins.kind]


def sample_instruction(scene: Scene, rng: random.Random) -> Instruction:
    """A random instruction that applies to ``scene``."""
    while True:
        kind = rng.choice(KINDS)
        obj = rng.choice(scene.objects)
        try:
            ins = _random_instruction(scene, obj, kind, rng)
            apply(scene, ins)
            return ins
        except ValueError:
            continue


def _random_instruction(scene: Scene, obj: SceneObject, kind: str, rng: random.Random) -> Instruction:
    if kind == "background":
        return Instruction(kind, value=rng.choice(BACKGROUNDS))
    if kind == "beautify":
        return Instruction(kind, value=rng.choice(STYLES))
    if kind == "add":
        new = SceneObject(
            rng.choice(SHAPES),
            rng.choice([c for c in COLOURS if c != scene.background]),
            rng.choice([p for p in POSITIONS if all(o.position != p for o in scene.objects)]),
            rng.choice(("large", "small")),
        )
        return Instruction(kind, new=new)
    target = SceneObject(obj.shape, obj.colour)
    values: dict[str, list[str | None]] = {
        "remove": [None],
        "recolour": list(COLOURS),
        "reshape": list(SHAPES),
        "move": list(POSITIONS),
        "resize": ["large", "small"],
    }
    return Instruction(kind, target=target, value=rng.choice(values[kind]))


# ---------------------------------------------------------------- reading an instruction back


_KIND_WORDS = (
    ("remove", ("去掉", "删掉", "不要", "remove", "delete")),
    ("add", ("加一个", "再放一个", "add a", "add an")),
    ("background", ("背景", "background")),
    (
        "beautify",
        ("精致", "好看", "描边", "轮廓线", "渐变", "阴影", "投影", "refined", "outline", "gradient", "shadow"),
    ),
    ("move", ("移到", "放到", "挪到", "move")),
    ("resize", ("变大", "变小", "大一点", "小一点", "放大一些", "放小一些", "bigger", "smaller")),
    ("reshape", ("turn",)),
)


def parse_instruction(text: str, scene: Scene) -> Instruction:
    """The instruction ``text`` words, read against ``scene`` (the objects it may name). Raises
    ``ValueError`` when it cannot be read."""
    lowered = text.lower()
    kind = next((k for k, words in _KIND_WORDS if any(w in lowered for w in words)), None)
    if kind == "background":
        mentioned = parse_caption(f"一个红色圆形，{text}" if "背景" in text else f"a red circle, {text}")
        return Instruction("background", value=mentioned.background)
    if kind == "beautify":
        style = next((s for s in STYLES if any(w in text for w in STYLE_ZH[s]) or s in lowered), "outline")
        return Instruction("beautify", value=style)
    if kind == "add":
        new = _added(text, scene)
        if new.position is None or new.size is None:
            new = replace(new, position=new.position or _free(scene), size=new.size or "small")
        return Instruction("add", new=new)
    if text.isascii():
        return _parse_english(lowered, scene, kind)
    # The named object is the first coloured-or-not shape word; the value comes after the verb.
    head, verb, tail = _split_verb(text)
    target = _named(scene, head if verb else text)
    if kind == "remove":
        return Instruction("remove", target=target)
    if kind == "move":
        return Instruction("move", target=target, value=_words(tail, POSITION_ZH, POSITION_EN))
    if kind == "resize":
        return Instruction(
            "resize", target=target, value="large" if any(w in text for w in ("大", "bigger")) else "small"
        )
    colour = next((c for c in COLOURS if COLOUR_ZH[c] in tail or c in tail.lower()), None)
    shape = next((s for s in SHAPES if any(w in tail for w in SHAPE_ZH[s]) or s in tail.lower()), None)
    if shape is not None and shape != target.shape:
        return Instruction("reshape", target=target, value=shape)
    if colour is not None:
        return Instruction("recolour", target=target, value=colour)
    raise ValueError(f"cannot read the instruction {text!r}")


def _parse_english(text: str, scene: Scene, kind: str | None) -> Instruction:
    """``make the red circle blue``, ``turn the red circle into a star``, ``move the red circle to the top left``."""
    words = text.replace(",", " ").split()
    shape_at = next((i for i, w in enumerate(words) if w.rstrip("s") in SHAPES), None)
    if shape_at is None:
        raise ValueError(f"the instruction names no shape: {text!r}")
    target = _named(scene, " ".join(words[: shape_at + 1]))
    tail = " ".join(words[shape_at + 1 :])
    if kind == "remove":
        return Instruction("remove", target=target)
    if kind == "move":
        return Instruction("move", target=target, value=_words(tail, {}, POSITION_EN))
    if kind == "resize":
        return Instruction("resize", target=target, value="large" if "bigger" in tail else "small")
    shape = next((s for s in SHAPES if s in tail), None)
    if shape is not None:
        return Instruction("reshape", target=target, value=shape)
    colour = next((c for c in COLOURS if c in tail.split()), None)
    if colour is not None:
        return Instruction("recolour", target=target, value=colour)
    raise ValueError(f"cannot read the instruction {text!r}")


def _split_verb(text: str) -> tuple[str, str, str]:
    for verb in ("换成", "改成", "变成", "移到", "放到", "挪到"):
        if verb in text:
            head, _, tail = text.partition(verb)
            return head, verb, tail
    return text, "", text


def _named(scene: Scene, text: str) -> SceneObject:
    lowered = text.lower()
    shapes = [s for s in SHAPES if any(w in text for w in SHAPE_ZH[s]) or s in lowered]
    colours = [c for c in COLOURS if COLOUR_ZH[c] + "色" in text or (COLOUR_ZH[c] in text) or c in lowered]
    for obj in scene.objects:
        if obj.shape in shapes and (not colours or obj.colour in colours or _unique_shape(scene, obj.shape)):
            return SceneObject(obj.shape, obj.colour)
    if len(scene.objects) == 1 and not shapes:
        obj = scene.objects[0]
        return SceneObject(obj.shape, obj.colour)
    raise ValueError(f"the instruction names no object of the scene: {text!r}")


def _words(text: str, zh: Mapping[str, tuple[str, ...]], en: Mapping[str, tuple[str, ...]]) -> str:
    hits = [(len(w), name) for name, words in zh.items() for w in words if w in text]
    hits += [(len(w), name) for name, words in en.items() for w in words if w in text.lower()]
    if not hits:
        raise ValueError(f"no position in {text!r}")
    return max(hits)[1]


def _added(text: str, scene: Scene) -> SceneObject:
    """The object an add instruction names; without a colour (加一个小三角形) it takes the first colour
    that is neither the background nor already in the scene."""
    try:
        return parse_caption(text).objects[0]
    except ValueError:
        lowered = text.lower()
        shape = next((s for s in SHAPES if any(w in text for w in SHAPE_ZH[s]) or s in lowered), None)
        if shape is None:
            raise
        used = {o.colour for o in scene.objects} | {scene.background}
        colour = next((c for c in COLOURS if c not in used), COLOURS[0])
        size = next((z for z in SIZE_ZH if any(w in text for w in SIZE_ZH[z]) or z in lowered), None)
        return SceneObject(shape=shape, colour=colour, size=size, position=_free(scene))


def _free(scene: Scene) -> str:
    taken = {o.position for o in scene.objects}
    return next(p for p in ("bottom-right", "top-left", "top-right", "bottom-left", "center") if p not in taken)


# ---------------------------------------------------------------- InstructPE records


@dataclass(frozen=True)
class InstructPERecord:
    """DiffChat's training tuple (the field names of the published InstructPE JSON)."""

    source_prompt: str
    instruction: str
    beautified_source_prompt: str
    beautified_target_prompt: str


def instructpe_record(scene: Scene, rng: random.Random) -> tuple[InstructPERecord, Instruction, Scene]:
    """A record from ``scene`` (its objects' styles are ignored for the plain source prompt): the
    instruction, and the scene the target prompt describes."""
    plain = scene.without_styles()
    style = rng.choice(STYLES)
    beautified = Scene(tuple(replace(o, styles=(style,)) for o in plain.objects), plain.background)
    ins = sample_instruction(beautified, rng)
    target = apply(beautified, ins)
    record = InstructPERecord(
        source_prompt=caption(plain, rng, "zh"),
        instruction=phrase(beautified, ins, rng),
        beautified_source_prompt=canonical_caption(beautified),
        beautified_target_prompt=canonical_caption(target),
    )
    return record, ins, target
