"""Tiny random-init pipelines of every served family, built offline from configs in about a second each.

As diffusers' own tests build theirs (``get_dummy_components``), with tokenizers built here instead of
downloaded. Their images are noise, but every code path of a family runs: loading by family, each mode's
pipeline class, guidance, batching, LoRAs, progress and cancel. Tests and ``python -m benchmarks.families``
use them; each folder states in its marker the size and steps it is meant to be run at.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from app.adapters.diffusers.tiny import clip_t5, llm_encoders
from app.domain.generation import MIN_SIZE

Builder = Callable[[str, int], str]
BUILDERS: dict[str, Builder] = {**clip_t5.BUILDERS, **llm_encoders.BUILDERS}
NATIVE_SIZE: dict[str, int] = {**clip_t5.NATIVE_SIZE, **llm_encoders.NATIVE_SIZE}
TINY_STEPS = 2
MARKER_FILE = "atelier-demo.json"


def build_tiny(family: str, out_dir: str, seed: int = 0) -> str:
    """Save the tiny pipeline of ``family`` (a key of :data:`BUILDERS`) to ``out_dir``; return it."""
    if family not in BUILDERS:
        raise ValueError(f"no tiny builder for {family!r}; known: {', '.join(sorted(BUILDERS))}")
    BUILDERS[family](out_dir, seed)
    size = max(MIN_SIZE, NATIVE_SIZE[family])  # the smallest size a request may ask for
    marker = {"tiny": family, "recommended": {"size": size, "steps": TINY_STEPS}}
    (Path(out_dir) / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return out_dir
