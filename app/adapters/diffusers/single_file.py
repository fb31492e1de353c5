"""Convert one original-layout checkpoint (as A1111, ComfyUI, Stability and Black Forest Labs save them) into a
diffusers folder, offline, with the configs of a diffusers folder of the same family (``config_dir``): diffusers
needs them to convert without a hub.

The family is read from the checkpoint's keys (:func:`checkpoint_family`) and must be the config folder's
(``checkpoint_family_mismatch`` otherwise, naming both):

- Stable Diffusion 1.x/2.x (InstructPix2Pix when the UNet reads 8 channels): ``model.diffusion_model.*`` (UNet),
  ``first_stage_model.*`` (VAE) and ``cond_stage_model.transformer.*`` (CLIP; PAI's over the Chinese BERT vocab)
  or ``cond_stage_model.model.*`` (SD 2.x's OpenCLIP-H, in open_clip's layout; its last layer, which SD 2.x
  skips, may be left out of the config);
- SDXL base: the same UNet and VAE, ``conditioner.embedders.0.transformer.*`` (CLIP-L) and
  ``conditioner.embedders.1.model.*`` (OpenCLIP-G in open_clip's layout: fused ``in_proj``, transposed
  ``text_projection``);
- SDXL refiner: the same UNet and VAE and ``conditioner.embedders.0.model.*`` (OpenCLIP-G) alone;
- SD3 (``joint_blocks.*``) and FLUX.1 (``double_blocks.*``), bare or under ``model.diffusion_model.``: the
  transformer, plus the VAE (``first_stage_model.``/``vae.``) and text encoders
  (``text_encoders.{clip_l,clip_g,t5xxl}.transformer.*``, in transformers' layout) when the file has them. What
  the file lacks comes from the config folder, as the official transformer-only releases are meant to be used.

What is used from where:

- weights file: read here (``safetensors``, or ``torch.load(weights_only=True)`` for ``.ckpt``/``.pt``);
- UNet, transformer and VAE: ``<Model>.from_single_file(state, config=config_dir, subfolder=...,
  local_files_only=True)``, i.e. diffusers' own key mapping, checked here for missing (diffusers leaves them on the
  meta device), misshaped and (UNet, VAE) left-over weights. diffusers' FLUX mapping assumes FLUX.1's width
  (3072); a FLUX file of another width is refused as a mismatch;
- text encoders: onto the config folder's text-encoder classes, strictly, one per prefix; the OpenCLIP towers
  through diffusers' ``convert_open_clip_checkpoint``. The pipeline-level ``StableDiffusionXLPipeline.from_single_file``
  is not used: it chooses the weights of ``text_encoder_2`` by the towers' widths, so where both are equally
  wide (the tiny test models) it loads CLIP-L's weights into it, and it leaves a missing ``text_projection``
  on the meta device;
- tokenizers, scheduler, safety checker, feature extractor (and for SD3/FLUX whatever the file lacks):
  hard-linked (or copied) from ``config_dir``.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers as _diffusers
import torch
import transformers as _transformers
from diffusers.loaders import single_file_utils as _single_file_utils
from safetensors.torch import load_file

from app.adapters.diffusers.generator import quiet_libraries
from app.adapters.diffusers.layout import inspect_model
from app.adapters.storage.folders import building
from app.domain.errors import InvalidParameters, ModelUnavailable
from app.domain.families import PROFILES, Family

diffusers: Any = _diffusers  # untyped for a strict mypy
transformers: Any = _transformers
single_file_utils: Any = _single_file_utils

UNET_PREFIX, VAE_PREFIX, TEXT_PREFIX = "model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer."
OPEN_CLIP_SD2 = "cond_stage_model.model."
CLIP_L_SDXL, OPEN_CLIP_G_SDXL = "conditioner.embedders.0.transformer.", "conditioner.embedders.1.model."
OPEN_CLIP_G_REFINER = "conditioner.embedders.0.model."
_VAE_PREFIXES = (VAE_PREFIX, "vae.")
# What is not the denoiser in a file whose transformer keys are bare (FLUX's and SD3's official releases).
_NOT_DENOISER = (*_VAE_PREFIXES, "cond_stage_model.", "conditioner.", "text_encoders.")
FLUX_WIDTH = 3072  # diffusers' FLUX mapping splits the fused projections at FLUX.1's width
_IN_CHANNELS = UNET_PREFIX + "input_blocks.0.0.weight"
_HINT = (
    "Pass --config with a diffusers folder (or a registered model) of the same architecture as the checkpoint, "
    "e.g. the SD-1.5, PAI-Diffusion or SDXL base folder it was trained from."
)
CONVERTED_FAMILIES = (Family.SD, Family.INSTRUCT_PIX2PIX, Family.SDXL, Family.SDXL_REFINER, Family.SD3, Family.FLUX)


@dataclass(frozen=True)
class _Part:
    """One component the checkpoint holds: where it goes (``subfolder``), how it is mapped and its key prefix.
    ``kind``: ``model`` (a diffusers model through ``from_single_file``), ``clip`` (a transformers model whose
    keys follow ``prefix`` unchanged) or ``open_clip`` (open_clip's layout, converted by diffusers)."""

    subfolder: str
    kind: str
    prefix: str
    required: bool = True


def _short(error: BaseException) -> str:
    """The gist of a library error: one line, without diffusers' advice on overriding the check."""
    text = " ".join(str(error).split()).split(" If you want to instead")[0][:300].rstrip(".")
    return "some weights are missing" if "meta tensor" in text else text or type(error).__name__


def _bad_file(message: str) -> InvalidParameters:
    return InvalidParameters(message, code="invalid_checkpoint", field="path")


def _mismatch(path: str, config_dir: str, detail: str) -> InvalidParameters:
    message = f"{Path(path).name} does not fit the architecture of {config_dir}: {detail}. {_HINT}"
    return InvalidParameters(message, code="checkpoint_mismatch", field="config")


def _has(keys: Iterable[str], prefix: str) -> bool:
    return any(key.startswith(prefix) for key in keys)


def checkpoint_family(state: dict[str, Any]) -> Family | None:
    """The family an original-layout checkpoint belongs to, from its keys (None: none Atelier converts).

    SDXL base files have a second text embedder (``conditioner.embedders.1``); refiner files have only the
    OpenCLIP-G one, as embedder 0 (``conditioner.embedders.0.model``). SD3's transformer has ``joint_blocks``,
    FLUX's ``double_blocks``; a UNet under ``model.diffusion_model.`` with ``cond_stage_model`` text encoders is
    SD 1.x/2.x (InstructPix2Pix when its first convolution reads 8 channels: image latents beside the noise)."""
    keys = list(state)
    if _has(keys, "conditioner.embedders.1."):
        return Family.SDXL
    if _has(keys, OPEN_CLIP_G_REFINER):
        return Family.SDXL_REFINER
    bare = [key.removeprefix(UNET_PREFIX) for key in keys]
    if _has(bare, "joint_blocks."):
        return Family.SD3
    if _has(bare, "double_blocks."):
        return Family.FLUX
    if not _has(keys, UNET_PREFIX + "input_blocks."):
        return None
    if UNET_PREFIX + "label_emb.0.0.weight" in state:  # an SDXL UNet whose text encoders are not in the file
        return Family.SDXL
    conv_in = state.get(_IN_CHANNELS)
    if isinstance(conv_in, torch.Tensor) and conv_in.ndim == 4 and conv_in.shape[1] == 8:
        return Family.INSTRUCT_PIX2PIX
    return Family.SD


def load_checkpoint(path: str) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors``/``.ckpt``/``.pt`` checkpoint of a family Atelier converts."""
    tensors = read_tensors(path)
    if checkpoint_family(tensors) is None:
        raise _bad_file(
            f"{path} is not an original-layout checkpoint of a family Atelier converts (no {UNET_PREFIX}* UNet, "
            "SD3 joint_blocks or FLUX double_blocks weights). Single files are converted for: "
            f"{', '.join(PROFILES[f].label for f in CONVERTED_FAMILIES)}."
        )
    return tensors


def read_tensors(path: str) -> dict[str, torch.Tensor]:
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
    return (
        {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if isinstance(state, dict)
        else {}
    )


def _parts(family: Family, state: dict[str, Any]) -> list[_Part]:
    """The components a checkpoint of ``family`` holds, in the order they are converted."""
    unet, vae = _Part("unet", "model", UNET_PREFIX), _Part("vae", "model", VAE_PREFIX)
    if family in (Family.SD, Family.INSTRUCT_PIX2PIX):
        sd2 = _has(state, OPEN_CLIP_SD2)
        return [unet, vae, _Part("text_encoder", "open_clip" if sd2 else "clip", OPEN_CLIP_SD2 if sd2 else TEXT_PREFIX)]
    if family is Family.SDXL:
        return [
            unet,
            vae,
            _Part("text_encoder", "clip", CLIP_L_SDXL),
            _Part("text_encoder_2", "open_clip", OPEN_CLIP_G_SDXL),
        ]
    if family is Family.SDXL_REFINER:
        return [unet, vae, _Part("text_encoder_2", "open_clip", OPEN_CLIP_G_REFINER)]
    vae_prefix = next((p for p in _VAE_PREFIXES if _has(state, p)), VAE_PREFIX)
    towers = ("clip_l", "clip_g", "t5xxl") if family is Family.SD3 else ("clip_l", "t5xxl")
    texts = [
        _Part(f"text_encoder{'' if i == 0 else f'_{i + 1}'}", "clip", f"text_encoders.{tower}.transformer.", False)
        for i, tower in enumerate(towers)
    ]
    return [_Part("transformer", "model", UNET_PREFIX), _Part("vae", "model", vae_prefix, False), *texts]


def _config_family(config_dir: str) -> Family:
    try:
        return Family(inspect_model(config_dir)["family"])
    except ModelUnavailable as e:
        raise InvalidParameters(f"{e.message} {_HINT}", code="invalid_config", field="config") from e


def _model_index(config_dir: str, parts: list[_Part]) -> dict[str, Any]:
    root = Path(config_dir)
    try:
        index = json.loads((root / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        index = None
    names = [part.subfolder for part in parts]
    if not isinstance(index, dict) or not all(
        isinstance(index.get(name), list) and (root / name / "config.json").is_file() for name in names
    ):
        raise InvalidParameters(
            f"{config_dir} lacks a component the checkpoint needs configs for (model_index.json with "
            f"{', '.join(names)}, each with a config.json). {_HINT}",
            code="invalid_config",
            field="config",
        )
    return index


def _denoiser_keys(state: dict[str, Any], prefix: str) -> list[str]:
    """The keys of the UNet or transformer: under ``prefix``, or bare beside other components' prefixes."""
    under = [k for k in state if k.startswith(prefix)]
    return under or [k for k in state if not k.startswith(_NOT_DENOISER)]


def _diffusers_model(state: dict[str, Any], part: _Part, config_dir: str, index: dict[str, Any], path: str) -> Any:
    """A UNet, transformer or VAE through diffusers' ``from_single_file``, refused unless every weight fits."""
    subfolder, prefix = part.subfolder, part.prefix
    library, class_name = index[subfolder]
    cls = getattr(diffusers, class_name, None) if library == "diffusers" else None
    if cls is None or not hasattr(cls, "from_single_file"):
        raise _mismatch(path, config_dir, f"its {subfolder} class {class_name!r} cannot be read from a single file")
    if class_name == "FluxTransformer2DModel":
        config = json.loads((Path(config_dir) / subfolder / "config.json").read_text(encoding="utf-8"))
        width = int(config.get("num_attention_heads", 0)) * int(config.get("attention_head_dim", 0))
        if width != FLUX_WIDTH:
            detail = f"diffusers converts FLUX.1 single files {FLUX_WIDTH} wide only; this transformer is {width} wide"
            raise _mismatch(path, config_dir, detail)
    keys = _denoiser_keys(state, prefix) if subfolder in ("unet", "transformer") else []
    part_count = len(keys) if keys else sum(1 for k in state if k.startswith(prefix))
    if not part_count:
        raise _mismatch(path, config_dir, f"it has no {subfolder} weights ({prefix}*)")
    try:
        model = cls.from_single_file(
            dict(state), config=config_dir, subfolder=subfolder, local_files_only=True, low_cpu_mem_usage=True
        )
    except Exception as e:  # a shape mismatch (ValueError), a key the mapping expected (KeyError), ...
        raise _mismatch(path, config_dir, f"{subfolder}: {_short(e)}") from e
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    missing = sorted(name for name, tensor in tensors.items() if tensor.is_meta)
    if missing:
        raise _mismatch(path, config_dir, f"{len(missing)} {subfolder} weights are missing, e.g. {missing[0]}")
    own = len(model.state_dict())
    if subfolder != "transformer" and part_count > own:  # the LDM and diffusers layouts map one to one
        raise _mismatch(path, config_dir, f"it has {part_count} {subfolder} weights, the config's {own}")
    return model


def _onto(source: dict[str, Any], model_keys: list[str]) -> tuple[dict[str, Any], list[str]]:
    """``source`` renamed to ``model_keys`` (with or without ``text_model.``, as ``transformers`` versions
    differ); returns the mapped weights and the source keys that map to nothing."""
    own = {key.removeprefix("text_model."): key for key in model_keys}
    mapped: dict[str, Any] = {}
    unused: list[str] = []
    for key, value in source.items():
        short = key.removeprefix("text_model.")
        if short.endswith("position_ids"):  # a buffer, rebuilt at init
            continue
        if short in own:
            mapped[own[short]] = value
        else:
            unused.append(key)
    return mapped, unused


def _fill_tied(model: Any, mapped: dict[str, Any], missing: list[str]) -> list[str]:
    """Weights a file may leave out: T5's embedding under one of its two tied names, and CLIP-L's
    ``text_projection`` in SD3 files (the identity, as diffusers sets it). Returns what is still missing."""
    still = []
    own = model.state_dict()
    for key in missing:
        twin = {"encoder.embed_tokens.weight": "shared.weight", "shared.weight": "encoder.embed_tokens.weight"}.get(key)
        shape = own[key].shape
        if twin in mapped:
            mapped[key] = mapped[twin]
        elif key == "text_projection.weight" and len(shape) == 2 and shape[0] == shape[1]:
            mapped[key] = torch.eye(shape[0])
        else:
            still.append(key)
    return still


def _text_encoder(
    state: dict[str, Any], part: _Part, family: Family, index: dict[str, Any], config_dir: str, path: str
) -> Any:
    library, class_name = index[part.subfolder]
    cls = getattr(transformers, class_name, None) if library == "transformers" else None
    if cls is None:
        raise _mismatch(path, config_dir, f"its {part.subfolder} class {class_name!r} is not a transformers model")
    config = cls.config_class.from_pretrained(str(Path(config_dir) / part.subfolder), local_files_only=True)
    model = cls(config)
    if part.kind == "open_clip":
        source = single_file_utils.convert_open_clip_checkpoint(model, state, prefix=part.prefix)
    else:
        source = {k.removeprefix(part.prefix): v for k, v in state.items() if k.startswith(part.prefix)}
    mapped, unused = _onto(source, list(model.state_dict()))
    if part.kind == "open_clip" and family is Family.SD:
        # SD 2.x runs OpenCLIP-H without its last layer and without its projection (a CLIPTextModel)
        skipped = (f"text_model.encoder.layers.{getattr(config, 'num_hidden_layers', -1)}.", "text_projection.")
        unused = [k for k in unused if not k.startswith(skipped)]
    if not mapped:
        raise _mismatch(path, config_dir, f"it has no {part.subfolder} weights ({part.prefix}*)")
    try:
        missing, _ = model.load_state_dict(mapped, strict=False)
    except RuntimeError as e:  # size mismatch
        raise _mismatch(path, config_dir, f"{part.subfolder}: {_short(e)}") from e
    missing = _fill_tied(model, mapped, [key for key in missing if not key.endswith("position_ids")])
    if missing or unused:
        where = "" if part.kind == "open_clip" else part.prefix  # open_clip's keys are named as converted
        detail = f"missing {missing[0]}" if missing else f"unused {where}{unused[0]}"
        raise _mismatch(path, config_dir, f"its {part.subfolder} weights do not match ({detail})")
    model.load_state_dict(mapped, strict=False)
    return model.eval()


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # the safety checker is ~1.2 GB: share it with the config folder when possible
    except OSError:
        shutil.copy2(src, dst)


def convert_single_file(path: str, out_dir: str, config_dir: str | None) -> str:
    """Write the checkpoint ``path`` as a diffusers folder at ``out_dir`` (replacing one there), with the
    configs, tokenizers and scheduler of ``config_dir``, a diffusers folder of the checkpoint's family. The
    folder appears complete or not at all. Raises ``InvalidParameters`` for an unreadable file, a bad
    ``config_dir``, a family other than ``config_dir``'s or a mismatched architecture."""
    if not config_dir:
        raise InvalidParameters(f"Converting a single-file checkpoint needs configs. {_HINT}", field="config")
    quiet_libraries()
    state = load_checkpoint(path)
    family = checkpoint_family(state)
    assert family is not None  # load_checkpoint refuses the others
    wanted = _config_family(config_dir)
    if wanted is not family:
        raise InvalidParameters(
            f"{Path(path).name} is a {PROFILES[family].label} checkpoint, but {config_dir} is a "
            f"{PROFILES[wanted].label} model folder: convert it with the configs of a {PROFILES[family].label} "
            "diffusers folder (--config a folder or registered model of that family).",
            code="checkpoint_family_mismatch",
            field="config",
        )
    parts = [part for part in _parts(family, state) if part.required or _has(state, part.prefix)]
    index = _model_index(config_dir, parts)
    converted: dict[str, Any] = {}
    for part in parts:
        if part.kind == "model":
            converted[part.subfolder] = _diffusers_model(state, part, config_dir, index, path)
        else:
            converted[part.subfolder] = _text_encoder(state, part, family, index, config_dir, path)
    target = Path(out_dir).resolve()
    with building(target) as tmp:
        for name, model in converted.items():
            model.save_pretrained(tmp / name)
        for name, entry in index.items():
            if name not in converted and isinstance(entry, list) and entry[0] and (Path(config_dir) / name).is_dir():
                shutil.copytree(Path(config_dir) / name, tmp / name, copy_function=_link_or_copy)
        shutil.copyfile(Path(config_dir) / "model_index.json", tmp / "model_index.json")
    return str(target)


def convert_vae_file(path: str, out_dir: str, config_dir: str | None) -> str:
    """Write a single-file VAE (A1111's ``.safetensors``/``.pt``: the autoencoder's weights in the original
    layout, bare or under ``first_stage_model.``) as a diffusers folder at ``out_dir``, with the architecture of
    ``config_dir``'s ``vae/`` (a diffusers folder whose VAE has the same shape). Raises ``InvalidParameters``
    for an unreadable file or one whose weights do not all fit that architecture."""
    if not config_dir or not (Path(config_dir) / "vae" / "config.json").is_file():
        raise InvalidParameters(
            f"Converting a VAE file needs the configs of a model folder with a vae/ of the same shape. {_HINT}",
            field="config",
        )
    quiet_libraries()
    state = read_tensors(path)
    if _has(state, VAE_PREFIX):  # a whole checkpoint's VAE, or a VAE saved with its checkpoint prefix
        state = {k.removeprefix(VAE_PREFIX): v for k, v in state.items() if k.startswith(VAE_PREFIX)}
    if not any(k.startswith(("encoder.", "decoder.")) for k in state):
        raise _bad_file(f"{path} is not a VAE file: it has no encoder.*/decoder.* weights.")
    config = json.loads((Path(config_dir) / "vae" / "config.json").read_text(encoding="utf-8"))
    cls = getattr(diffusers, str(config.get("_class_name")), None)
    if cls is None or not hasattr(cls, "from_single_file"):
        raise _mismatch(path, config_dir, f"its VAE class {config.get('_class_name')!r} cannot be read from a file")
    try:
        model = cls.from_single_file(
            state, config=config_dir, subfolder="vae", local_files_only=True, low_cpu_mem_usage=True
        )
    except Exception as e:
        raise _mismatch(path, config_dir, f"vae: {_short(e)}") from e
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    missing = sorted(name for name, tensor in tensors.items() if tensor.is_meta)
    if missing or len(state) > len(model.state_dict()):
        detail = f"{len(missing)} weights are missing, e.g. {missing[0]}" if missing else "it has extra weights"
        raise _mismatch(path, config_dir, f"vae: {detail}")
    target = Path(out_dir).resolve()
    with building(target) as tmp:
        model.save_pretrained(tmp)
    return str(target)
