"""The A1111 (stable-diffusion-webui) prompt syntax: attention weights, ``BREAK`` and ``<lora:...>`` tags.

- ``(text)`` multiplies the attention of ``text`` by 1.1, ``[text]`` divides it by 1.1, ``(text:1.5)``
  multiplies it by 1.5; nesting multiplies. Brackets left open are closed at the end of the prompt.
- ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\`` are literal characters; any other backslash is kept as it is.
- A ``:`` that is not a valid weight before ``)`` (``(cat:abc)``, ``a: b``) is ordinary text.
- ``BREAK`` (uppercase, as a whole word) ends the current chunk of tokens (see :data:`BREAK`).
- ``<lora:NAME>`` / ``<lora:NAME:WEIGHT>`` is removed from the text and reported in ``ParsedPrompt.loras``.
- Full-width punctuation (``（`` ``）`` ``，``) is ordinary Chinese text, never syntax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_LORA = re.compile(rf"<lora:(?P<name>[\w.\-]+)(?::\s*(?P<weight>{_NUMBER})\s*)?>")
_TOKEN = re.compile(
    rf"""
      \\(?P<escaped>[()\[\]\\])          # an escaped bracket or backslash
    | (?P<open>[(\[])
    | :\s*(?P<weight>{_NUMBER})\s*\)     # the end of (text:1.5)
    | (?P<close>[)\]])
    | (?P<text>[^\\()\[\]:]+|[\\:])      # plain text; a lone backslash or colon is text too
    """,
    re.VERBOSE,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*")


@dataclass(frozen=True)
class PromptFragment:
    """A run of prompt text sharing one attention weight, or a chunk break (``is_break``, see :data:`BREAK`)."""

    text: str
    weight: float
    is_break: bool = False


BREAK = PromptFragment(text="BREAK", weight=1.0, is_break=True)
"""The fragment a ``BREAK`` keyword becomes: a flag rather than a magic weight, so no weight can be mistaken for it."""


@dataclass(frozen=True)
class ParsedPrompt:
    """A prompt split into weighted fragments, with its LoRA tags taken out.

    ``plain_text`` is the text without any syntax: the fragments' texts joined, a ``BREAK`` becoming one space.
    """

    fragments: tuple[PromptFragment, ...]
    loras: tuple[tuple[str, float], ...]
    plain_text: str


def parse_prompt(text: str) -> ParsedPrompt:
    """Parse A1111 prompt syntax; never raises (anything that is not valid syntax is literal text)."""
    loras = tuple((m["name"], float(m["weight"]) if m["weight"] else 1.0) for m in _LORA.finditer(text))
    texts, weights, breaks = _scan(_LORA.sub("", text))
    fragments = _merge(texts, weights, breaks)
    plain = "".join(" " if f.is_break else f.text for f in fragments)
    return ParsedPrompt(fragments=fragments, loras=loras, plain_text=plain)


def _scan(text: str) -> tuple[list[str], list[float], list[bool]]:
    """The pieces of ``text`` with their weights, before merging; open brackets multiply every piece after them."""
    texts: list[str] = []
    weights: list[float] = []
    breaks: list[bool] = []
    round_opened: list[int] = []  # index of the first piece inside each open bracket
    square_opened: list[int] = []

    def multiply_from(start: int, factor: float) -> None:
        for i in range(start, len(weights)):
            weights[i] *= factor

    for match in _TOKEN.finditer(text):
        token = match[0]
        if match["escaped"] is not None:
            texts.append(match["escaped"])
            weights.append(1.0)
            breaks.append(False)
        elif match["open"] is not None:
            (round_opened if token == "(" else square_opened).append(len(texts))
        elif match["weight"] is not None and round_opened:
            multiply_from(round_opened.pop(), float(match["weight"]))
        elif token == ")" and round_opened:
            multiply_from(round_opened.pop(), ROUND_MULTIPLIER)
        elif token == "]" and square_opened:
            multiply_from(square_opened.pop(), SQUARE_MULTIPLIER)
        else:  # plain text, or a closing bracket / weight with nothing open
            for i, part in enumerate(_BREAK.split(token)):
                if i > 0:
                    texts.append(BREAK.text)
                    weights.append(BREAK.weight)
                    breaks.append(True)
                texts.append(part)
                weights.append(1.0)
                breaks.append(False)
    for start in round_opened:
        multiply_from(start, ROUND_MULTIPLIER)
    for start in square_opened:
        multiply_from(start, SQUARE_MULTIPLIER)
    return texts, weights, breaks


def _merge(texts: list[str], weights: list[float], breaks: list[bool]) -> tuple[PromptFragment, ...]:
    """Drop empty pieces and join neighbours of equal weight; a break stays on its own."""
    merged: list[PromptFragment] = []
    for text, weight, is_break in zip(texts, weights, breaks, strict=True):
        if is_break:
            merged.append(BREAK)
        elif not text:
            continue
        elif merged and not merged[-1].is_break and merged[-1].weight == weight:
            merged[-1] = PromptFragment(merged[-1].text + text, weight)
        else:
            merged.append(PromptFragment(text, weight))
    return tuple(merged)
