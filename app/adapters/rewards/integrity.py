"""Content integrity (DiffChat's integrity reward) read by the demo world's checker.

The scene the turn should produce is the source prompt's scene with the instruction applied (both read
with the demo world's grammar: ``parse_caption``, ``parse_instruction``); the reward is how well the
checker's reading of the image matches it (``app.demo_world.integrity.integrity``: each asked attribute that
is seen counts, extra objects cost). So a candidate scores high only when the image shows the
instruction applied **and** the rest of the scene kept. When the instruction cannot be read, the
candidate's own prompt is the reference (the image should at least show what its prompt says).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from app.demo_world.instructions import apply, parse_instruction
from app.demo_world.integrity import IntegrityReport, integrity
from app.demo_world.parsing import parse_caption
from app.demo_world.scenes import Scene
from app.demo_world.vocabulary import DEFAULT_BACKGROUND
from app.domain.prompt_sessions import COMBINED, ScoreItem
from app.ports.prompt_sessions import RewardInput, RewardModel
from app.ports.scenes import SceneReader


def expected_scene(source_prompt: str, instruction: str, prompt: str) -> Scene | None:
    """The scene a turn asks for, or None when neither the instruction nor the prompt can be read."""
    try:
        source = parse_caption(source_prompt)
        return apply(source, parse_instruction(instruction, source))
    except (ValueError, IndexError):
        pass
    try:
        return parse_caption(prompt)
    except (ValueError, IndexError):
        return None


class CheckerIntegrityReward(RewardModel):
    name = "integrity"

    def __init__(self, reader: SceneReader) -> None:
        self._reader = reader

    def score(self, inputs: list[RewardInput]) -> list[float]:
        out = []
        for item in inputs:
            asked = expected_scene(item.source_prompt, item.instruction, item.prompt)
            if asked is None or not asked.objects:
                out.append(0.0)
                continue
            out.append(float(integrity(asked, self._reader.read(item.image)).score))
        return out


def text_integrity(source_prompt: str, instruction: str, prompt: str) -> IntegrityReport | None:
    """How well a rewrite's own text states the scene the turn asks for, read by the demo grammar (an
    unstated background is the default one): the integrity reward without rendering. None when the asked
    scene cannot be read; a rewrite that names no coloured shape scores 0."""
    asked = expected_scene(source_prompt, instruction, prompt)
    if asked is None or not asked.objects:
        return None
    try:
        stated = parse_caption(prompt)
    except (ValueError, IndexError):
        return IntegrityReport(score=0.0, exact=False, matched=())
    return integrity(asked, replace(stated, background=stated.background or DEFAULT_BACKGROUND))


def text_integrity_scores(items: Sequence[ScoreItem]) -> list[dict[str, float]]:
    """Rows of scores for RL's render-free reward (``train-rl --reward text``): the combined reward and
    integrity are both the text integrity, so the held-out ``exact`` share counts rewrites that state the
    asked scene exactly."""
    rows = []
    for item in items:
        report = text_integrity(item.source_prompt, item.instruction, item.prompt)
        score = 0.0 if report is None else report.score
        rows.append({COMBINED: score, "integrity": score})
    return rows
