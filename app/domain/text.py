"""Text that can be stored and sent back: valid Unicode, without lone surrogates.

JSON's ``\\udfff`` escape and undecodable command-line bytes both produce Python strings holding a lone
surrogate. Such a string cannot be written as UTF-8, so stored once it would break every later answer
that includes it; it is refused where text enters.
"""

from __future__ import annotations

from typing import Any

from app.domain.errors import InvalidParameters

MAX_DEPTH = 64  # nesting of a request body: far beyond any real request, far below Python's recursion limit


def is_valid_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def require_text(text: str, field: str) -> str:
    if not is_valid_text(text):
        raise InvalidParameters(
            f"{field} holds an invalid character (a lone UTF-16 surrogate); send valid Unicode text.",
            code="invalid_text",
            field=field,
        )
    return text


def check_document(value: Any, path: str = "", depth: int = 0) -> None:
    """Every string (keys too) of a decoded JSON document is valid text, and it nests at most ``MAX_DEPTH``."""
    if depth > MAX_DEPTH:
        raise InvalidParameters(f"The request nests deeper than {MAX_DEPTH} levels.", code="too_deep")
    if isinstance(value, str):
        require_text(value, path or "body")
    elif isinstance(value, dict):
        for key, item in value.items():
            require_text(key, path or "body")
            check_document(item, f"{path}.{key}" if path else str(key), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_document(item, f"{path}.{index}" if path else str(index), depth + 1)


def repaired(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (for rows stored before text was checked)."""
    if is_valid_text(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def repaired_tree(value: Any) -> Any:
    """``repaired`` applied to every string of a JSON-like value."""
    if isinstance(value, str):
        return repaired(value)
    if isinstance(value, dict):
        return {repaired(k) if isinstance(k, str) else k: repaired_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [repaired_tree(v) for v in value]
    return value
