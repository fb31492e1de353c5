"""Read what a local diffusers folder is without loading it (no torch, no diffusers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.domain.errors import ModelUnavailable

FALLBACK_SIZE = 512
_TOKENIZER_KINDS = {"BertTokenizer": "bert", "BertTokenizerFast": "bert", "CLIPTokenizer": "clip"}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _default_size(root: Path) -> int:
    unet = _read_json(root / "unet" / "config.json") or {}
    vae = _read_json(root / "vae" / "config.json") or {}
    sample_size = unet.get("sample_size")
    blocks = vae.get("block_out_channels")
    if isinstance(sample_size, (list, tuple)) and sample_size:
        sample_size = sample_size[0]
    if not isinstance(sample_size, int) or isinstance(sample_size, bool) or not isinstance(blocks, list) or not blocks:
        return FALLBACK_SIZE
    return sample_size * (1 << (len(blocks) - 1))  # the VAE halves the size per extra block


def _tokenizer_kind(entry: Any) -> str:
    if not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[1], str):
        return "unknown"
    name = entry[1]
    if name in _TOKENIZER_KINDS:
        return _TOKENIZER_KINDS[name]
    return name.removesuffix("Fast").removesuffix("Tokenizer").lower() or "unknown"


def inspect_model(path: str) -> dict[str, Any]:
    """Describe a diffusers folder: ``default_size`` (native pixels), ``tokenizer`` kind and ``pipeline`` class.

    Raises ``ModelUnavailable`` when ``path`` has no readable ``model_index.json``.
    """
    root = Path(path)
    index_file = root / "model_index.json"
    if not index_file.is_file():
        raise ModelUnavailable(f"{path} is not a diffusers model folder: it has no model_index.json.")
    index = _read_json(index_file)
    if index is None:
        raise ModelUnavailable(f"{index_file} is not a readable JSON object.")
    pipeline = index.get("_class_name")
    return {
        "default_size": _default_size(root),
        "tokenizer": _tokenizer_kind(index.get("tokenizer")),
        "pipeline": pipeline if isinstance(pipeline, str) else "unknown",
    }
