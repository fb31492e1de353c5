"""Read what a local diffusers folder is without loading it (no torch, no diffusers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.adapters.diffusers.families import family_of_class
from app.domain.errors import ModelUnavailable
from app.domain.families import Family, profile, supported_families

FALLBACK_SIZE = 512
_TOKENIZER_KINDS = {"BertTokenizer": "bert", "BertTokenizerFast": "bert", "CLIPTokenizer": "clip"}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _vae_factor(vae: dict[str, Any]) -> int | None:
    """How many pixels a latent cell covers, per side, from the VAE's config."""
    for key, extra in (("block_out_channels", -1), ("encoder_block_out_channels", -1), ("temperal_downsample", 0)):
        blocks = vae.get(key)
        if isinstance(blocks, list) and blocks:
            return 1 << (len(blocks) + extra)  # each block past the first halves the size (Qwen's: each one)
    return None


def _default_size(root: Path, family: Family) -> int:
    """The native size: the denoiser's sample size in latent cells times the VAE's factor, else the
    family's recommended size."""
    denoiser = _read_json(root / "unet" / "config.json") or _read_json(root / "transformer" / "config.json") or {}
    factor = _vae_factor(_read_json(root / "vae" / "config.json") or {})
    sample_size = denoiser.get("sample_size")
    if isinstance(sample_size, (list, tuple)) and sample_size:
        sample_size = sample_size[0]
    if not isinstance(sample_size, int) or isinstance(sample_size, bool) or factor is None:
        return profile(family).size
    return sample_size * factor


def _family(root: Path, index: dict[str, Any]) -> Family:
    """The family the folder's pipeline class belongs to; an SDXL image-to-image folder without its first
    text encoder is the refiner."""
    name = index.get("_class_name")
    family = family_of_class(name) if isinstance(name, str) else None
    if family is None:
        raise ModelUnavailable(
            f"{root} holds a {name or 'unnamed'} pipeline, which Atelier does not serve. "
            f"Supported families: {supported_families()}."
        )
    if family is Family.SDXL and _component(index.get("text_encoder")) is None:
        return Family.SDXL_REFINER
    return family


def _component(entry: Any) -> str | None:
    """The class of a model_index.json component entry ([library, class]; [null, null] when absent)."""
    return entry[1] if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], str) else None


def _tokenizer_kind(entry: Any) -> str:
    name = _component(entry)
    if name is None:
        return "unknown"
    if name in _TOKENIZER_KINDS:
        return _TOKENIZER_KINDS[name]
    return name.removesuffix("Fast").removesuffix("Tokenizer").lower() or "unknown"


def inspect_model(path: str) -> dict[str, Any]:
    """Describe a diffusers folder: ``family``, ``default_size`` (native pixels), ``tokenizer`` kind, ``pipeline``
    class, and the recommended ``default_guidance``/``default_steps`` where its marker states them.

    Raises ``ModelUnavailable`` when ``path`` has no readable ``model_index.json`` or holds a pipeline of a
    family Atelier does not serve (the message names the supported ones).
    """
    root = Path(path)
    index_file = root / "model_index.json"
    if not index_file.is_file():
        raise ModelUnavailable(f"{path} is not a diffusers model folder: it has no model_index.json.")
    index = _read_json(index_file)
    if index is None:
        raise ModelUnavailable(f"{index_file} is not a readable JSON object.")
    pipeline = index.get("_class_name")
    family = _family(root, index)
    described: dict[str, Any] = {
        "default_size": _default_size(root, family),
        "tokenizer": _tokenizer_kind(index.get("tokenizer") or index.get("tokenizer_2")),
        "pipeline": pipeline if isinstance(pipeline, str) else "unknown",
        "family": family.value,
    }
    recommended = _recommended(root)
    for key, name in (("guidance_scale", "default_guidance"), ("steps", "default_steps"), ("size", "default_size")):
        if key in recommended:
            described[name] = recommended[key]
    return described


def _recommended(root: Path) -> dict[str, Any]:
    """``recommended`` values of an ``atelier-demo.json`` marker: ``guidance_scale``, ``steps`` and ``size``
    (the demo world's models state them: the trained ``demo`` is best at 3.0, where A1111's 7.5
    over-amplifies the prompt; the tiny test models of other families state the size they were built for)."""
    marker = _read_json(root / "atelier-demo.json") or {}
    recommended = marker.get("recommended")
    if not isinstance(recommended, dict):
        return {}
    found: dict[str, Any] = {}
    value = recommended.get("guidance_scale")
    if isinstance(value, int | float) and not isinstance(value, bool):
        found["guidance_scale"] = float(value)
    for key in ("steps", "size"):
        value = recommended.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            found[key] = value
    return found


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
