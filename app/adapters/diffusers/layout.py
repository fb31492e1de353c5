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
    described: dict[str, Any] = {
        "default_size": _default_size(root),
        "tokenizer": _tokenizer_kind(index.get("tokenizer")),
        "pipeline": pipeline if isinstance(pipeline, str) else "unknown",
    }
    guidance = _recommended_guidance(root)
    if guidance is not None:
        described["default_guidance"] = guidance
    return described


def _recommended_guidance(root: Path) -> float | None:
    """``recommended.guidance_scale`` of an ``atelier-demo.json`` marker (the demo world's models state it:
    the trained ``demo`` is best at 3.0, where A1111's 7.5 over-amplifies the prompt)."""
    marker = _read_json(root / "atelier-demo.json") or {}
    recommended = marker.get("recommended")
    value = recommended.get("guidance_scale") if isinstance(recommended, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


LORA_FILES = ("pytorch_lora_weights.safetensors", "pytorch_lora_weights.bin")
LORA_SUFFIXES = (".safetensors", ".bin", ".pt")


def lora_file(path: str) -> Path:
    """The weights file of a LoRA given as a file or as a folder holding ``pytorch_lora_weights.*``."""
    root = Path(path)
    if root.is_file() and root.suffix in LORA_SUFFIXES:
        return root
    for name in LORA_FILES:
        if (root / name).is_file():
            return root / name
    candidates = sorted(p for p in root.glob("*") if p.suffix in LORA_SUFFIXES) if root.is_dir() else []
    if len(candidates) == 1:
        return candidates[0]
    raise ModelUnavailable(f"{path} is not a LoRA: expected a .safetensors/.bin file or a folder with one.")


def inspect_controlnet(path: str) -> dict[str, Any]:
    """A diffusers ControlNet folder: ``config.json`` naming ``ControlNetModel``."""
    config = _read_json(Path(path) / "config.json")
    if config is None or config.get("_class_name") != "ControlNetModel":
        raise ModelUnavailable(f"{path} is not a diffusers ControlNet folder (config.json with ControlNetModel).")
    return {"default_size": FALLBACK_SIZE, "tokenizer": "none", "pipeline": "ControlNetModel"}


def inspect(path: str, kind: str) -> dict[str, Any]:
    """Describe a folder or file registered as ``kind`` (``base``, ``lora`` or ``controlnet``)."""
    if kind == "lora":
        return {"default_size": 0, "tokenizer": "none", "pipeline": "lora", "file": str(lora_file(path))}
    if kind == "controlnet":
        return inspect_controlnet(path)
    return inspect_model(path)
