"""The two baselines of the prompt-session benchmark, both usable in a session.

``ConcatPromptRewriter``: the prompt and the instruction joined (what a user without a rewriter does,
DiffChat's weakest baseline). ``RulePromptRewriter``: reads the prompt as a demo-world scene and the
instruction against it (``parse_instruction``), applies it and writes the new scene's caption; its
first candidate is the canonical caption, the others varied phrasings of the same scene. It knows
nothing outside the demo world's grammar and returns nothing for a prompt or an instruction it cannot
read (the turn then keeps the current prompt and says so).
"""

from __future__ import annotations

import random

from app.demo_world.instructions import apply, parse_instruction
from app.demo_world.parsing import parse_caption
from app.demo_world.scenes import canonical_caption, caption
from app.ports.prompt_sessions import PromptRewriter


class ConcatPromptRewriter(PromptRewriter):
    name = "concat"

    def rewrite(self, prompt: str, instruction: str, n: int, seed: int) -> list[str]:
        return [f"{prompt.rstrip('，,。. ')}，{instruction.strip()}"]


class RulePromptRewriter(PromptRewriter):
    name = "rule"

    def rewrite(self, prompt: str, instruction: str, n: int, seed: int) -> list[str]:
        try:
            scene = parse_caption(prompt)
            target = apply(scene, parse_instruction(instruction, scene))
        except (ValueError, IndexError):
            return []
        if not target.objects:
            return []
        rng = random.Random(seed)
        out = [canonical_caption(target)]
        for _ in range(max(0, n - 1) * 3):
            if len(out) >= n:
                break
            text = caption(target, rng, "zh")
            if text not in out:
                out.append(text)
        return out[:n]
