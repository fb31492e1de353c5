"""Convert one original-layout (LDM / A1111) Stable Diffusion checkpoint into a diffusers folder, offline.

diffusers 0.42.1 needs the component configs of a diffusers folder of the same architecture (``config_dir``)
to convert without a hub. What is used from where:

- weights file: read here (``safetensors``, or ``torch.load(weights_only=True)`` for ``.ckpt``/``.pt``);
- UNet and VAE: ``UNet2DConditionModel``/``AutoencoderKL.from_single_file(state, config=config_dir,
  subfolder=..., local_files_only=True)``, i.e. diffusers' own key mapping, checked here for missing,
  misshaped and left-over weights (diffusers leaves missing ones on the meta device, unused ones a warning);
- text encoder (``cond_stage_model.transformer.*``, a CLIP text tower, PAI's over the Chinese BERT vocab):
  mapped onto the config folder's text-encoder class by :func:`text_encoder_weights`, strictly. The
  pipeline-level ``from_single_file`` would strip the same prefix, but leaves missing weights on the meta
  device and does not know the prefix-less key layout of newer ``transformers``;
- tokenizer, scheduler, safety checker, feature extractor: hard-linked (or copied) from ``config_dir``.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import diffusers as _diffusers
import torch
import transformers as _transformers
from safetensors.torch import load_file

from app.adapters.diffusers.generator import quiet_libraries
from app.adapters.storage.folders import building
from app.domain.errors import InvalidParameters

diffusers: Any = _diffusers  # untyped for a strict mypy
transformers: Any = _transformers

UNET_PREFIX, VAE_PREFIX, TEXT_PREFIX = "model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer."
_CONVERTED = ("unet", "vae", "text_encoder")
_HINT = (
    "Pass --config with a diffusers folder (or a registered model) of the same architecture as the checkpoint, "
    "e.g. the SD-1.5 or PAI-Diffusion folder it was trained from."
)


def _short(error: BaseException) -> str:
    """The gist of a library error: one line, without diffusers' advice on overriding the check."""
    text = " ".join(str(error).split()).split(" If you want to instead")[0][:300].rstrip(".")
    return "some weights are missing" if "meta tensor" in text else text or type(error).__name__


def _bad_file(message: str) -> InvalidParameters:
    return InvalidParameters(message, code="invalid_checkpoint", field="path")


def _mismatch(path: str, config_dir: str, detail: str) -> InvalidParameters:
    message = f"{Path(path).name} does not fit the architecture of {config_dir}: {detail}. {_HINT}"
    return InvalidParameters(message, code="checkpoint_mismatch", field="config")


def load_checkpoint(path: str) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors``/``.ckpt``/``.pt`` file (a nested ``state_dict`` unwrapped)."""
    try:
        if path.endswith(".safetensors"):
            state: Any = load_file(path)
        else:  # weights_only: a pickle may hold code; only tensors and plain containers are unpickled
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        message = f"{path} holds pickled objects other than tensors (loaded weights_only); save it as .safetensors."
        raise _bad_file(message) from e
    except Exception as e:  # OSError, SafetensorError, and whatever a damaged pickle raises (KeyError, ...)
        raise _bad_file(f"{path} is not a readable checkpoint: {type(e).__name__}: {_short(e)}.") from e
    while isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not any(k.startswith(UNET_PREFIX) for k in state if isinstance(k, str)):
        raise _bad_file(f"{path} is not an original-layout Stable Diffusion checkpoint (no {UNET_PREFIX}* weights).")
    return {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def _model_index(config_dir: str) -> dict[str, Any]:
    root = Path(config_dir)
    try:
        index = json.loads((root / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        index = None
    if (
        not isinstance(index, dict)
        or "text_encoder_2" in index
        or not all(isinstance(index.get(name), list) and (root / name / "config.json").is_file() for name in _CONVERTED)
    ):
        raise InvalidParameters(
            f"{config_dir} is not a Stable-Diffusion-1.x-style diffusers folder (model_index.json with unet, vae "
            f"and one text_encoder, each with a config.json). {_HINT}",
            code="invalid_config",
            field="config",
        )
    return index


def _diffusers_model(state: dict[str, Any], prefix: str, cls: Any, config_dir: str, subfolder: str, path: str) -> Any:
    """A UNet or VAE through diffusers' ``from_single_file``, refused unless every weight fits exactly."""
    part = sum(1 for k in state if k.startswith(prefix))
    if not part:
        raise _mismatch(path, config_dir, f"it has no {subfolder} weights ({prefix}*)")
    try:
        model = cls.from_single_file(
            state, config=config_dir, subfolder=subfolder, local_files_only=True, low_cpu_mem_usage=True
        )
    except Exception as e:  # a shape mismatch (ValueError), a key the mapping expected (KeyError), ...
        raise _mismatch(path, config_dir, f"{subfolder}: {_short(e)}") from e
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    missing = sorted(name for name, tensor in tensors.items() if tensor.is_meta)
    if missing:
        raise _mismatch(path, config_dir, f"{len(missing)} {subfolder} weights are missing, e.g. {missing[0]}")
    if part > len(model.state_dict()):  # the LDM and diffusers layouts map one to one
        raise _mismatch(path, config_dir, f"it has {part} {subfolder} weights, the config's {len(model.state_dict())}")
    return model


def text_encoder_weights(state: dict[str, Any], model_keys: list[str]) -> tuple[dict[str, Any], list[str]]:
    """``cond_stage_model.transformer.[text_model.]*`` renamed to ``model_keys`` (with or without
    ``text_model.``, as ``transformers`` versions differ); returns the mapped weights and the unused keys."""
    own = {key.removeprefix("text_model."): key for key in model_keys}
    mapped: dict[str, Any] = {}
    unused: list[str] = []
    for key, value in state.items():
        if not key.startswith(TEXT_PREFIX):
            continue
        short = key.removeprefix(TEXT_PREFIX).removeprefix("text_model.")
        if short.endswith("position_ids"):  # a buffer, rebuilt at init
            continue
        if short in own:
            mapped[own[short]] = value
        else:
            unused.append(key)
    return mapped, unused


def _text_encoder(state: dict[str, Any], index: dict[str, Any], config_dir: str, path: str) -> Any:
    library, class_name = index["text_encoder"]
    cls = getattr(transformers, class_name, None) if library == "transformers" else None
    if cls is None:
        raise _mismatch(path, config_dir, f"its text encoder class {class_name!r} is not a transformers model")
    model = cls(cls.config_class.from_pretrained(str(Path(config_dir) / "text_encoder"), local_files_only=True))
    mapped, unused = text_encoder_weights(state, list(model.state_dict()))
    if not mapped:
        openclip = any(k.startswith("cond_stage_model.") for k in state)
        other = " (an OpenCLIP one, as in SD-2.x, is not supported)" if openclip else ""
        raise _mismatch(path, config_dir, f"it has no CLIP text encoder weights ({TEXT_PREFIX}*){other}")
    try:
        missing, _ = model.load_state_dict(mapped, strict=False)
    except RuntimeError as e:  # size mismatch
        raise _mismatch(path, config_dir, f"text_encoder: {_short(e)}") from e
    missing = [key for key in missing if not key.endswith("position_ids")]
    if missing or unused:
        detail = f"missing {missing[0]}" if missing else f"unused {unused[0]}"
        raise _mismatch(path, config_dir, f"its text encoder weights do not match ({detail})")
    return model.eval()


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # the safety checker is ~1.2 GB: share it with the config folder when possible
    except OSError:
        shutil.copy2(src, dst)


def convert_single_file(path: str, out_dir: str, config_dir: str | None) -> str:
    """Write the checkpoint ``path`` as a diffusers folder at ``out_dir`` (replacing one there), with the
    configs, tokenizer and scheduler of ``config_dir``. The folder appears complete or not at all.
    Raises ``InvalidParameters`` for an unreadable file, a bad ``config_dir`` or a mismatched architecture."""
    if not config_dir:
        raise InvalidParameters(f"Converting a single-file checkpoint needs configs. {_HINT}", field="config")
    quiet_libraries()
    index = _model_index(config_dir)
    state = load_checkpoint(path)
    unet = _diffusers_model(state, UNET_PREFIX, diffusers.UNet2DConditionModel, config_dir, "unet", path)
    vae = _diffusers_model(state, VAE_PREFIX, diffusers.AutoencoderKL, config_dir, "vae", path)
    text_encoder = _text_encoder(state, index, config_dir, path)
    target = Path(out_dir).resolve()
    with building(target) as tmp:
        for name, model in zip(_CONVERTED, (unet, vae, text_encoder), strict=True):
            model.save_pretrained(tmp / name)
        for name, entry in index.items():
            if name not in _CONVERTED and isinstance(entry, list) and entry[0] and (Path(config_dir) / name).is_dir():
                shutil.copytree(Path(config_dir) / name, tmp / name, copy_function=_link_or_copy)
        shutil.copyfile(Path(config_dir) / "model_index.json", tmp / "model_index.json")
    return str(target)
