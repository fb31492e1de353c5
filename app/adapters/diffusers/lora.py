"""LoRA adapters for diffusers pipelines: reading LoRA files of several formats, and activating them per request.

Adapters stay loaded but unfused, and each request sets its own (via PEFT's ``set_adapters``): an unfused LoRA costs
a little on every step, but switching it is cheaper than fusing and unfusing, whose cost grows with the model. Fusing
also breaks exactness: ``unfuse_lora`` subtracts the delta it added, so base weights drift by rounding and a later
request without LoRA no longer gets bit-identical base output. Unfused, it does. docs/benchmarks.md has the timings.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
import warnings
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from app.domain.errors import InvalidParameters, ModelUnavailable

Pipeline = Any  # diffusers is untyped for a strict mypy
ActiveLora = tuple[str, str, float]  # (registered LoRA name, path, weight)

DEFAULT_MAX_LOADED = 8
WEIGHT_FILES = ("pytorch_lora_weights.safetensors", "pytorch_lora_weights.bin")
_TORCH_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
# diffusers/PEFT files: UNet families, transformer families (FLUX, SD3, Qwen-Image, Z-Image, Sana, ...)
_DIFFUSERS_PREFIXES = ("unet.", "transformer.", "text_encoder.", "text_encoder_2.")
# kohya/A1111 files (also kohya's FLUX ones): diffusers converts them itself
_KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_", "lora_transformer_")
_UNET_ROOTS = ("down_blocks.", "mid_block.", "up_blocks.")  # unprefixed UNet keys (2023 attention processors)

# PEFT warns on every load into a model that has an adapter, and on evicting the last active one: both expected.
warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute", category=UserWarning)
warnings.filterwarnings("ignore", message="Adapter .* was active which is now deleted", category=UserWarning)


def _invalid(message: str) -> InvalidParameters:
    return InvalidParameters(message, code="invalid_lora", field="loras")


def lora_file(path: str) -> Path:
    """The weights file of a LoRA given as a file or as a folder holding ``pytorch_lora_weights.*``."""
    given = Path(path)
    if given.is_dir():
        for name in WEIGHT_FILES:
            if (given / name).is_file():
                return given / name
        raise ModelUnavailable(f"The LoRA folder {path} has no {' or '.join(WEIGHT_FILES)}.")
    if not given.is_file():
        raise ModelUnavailable(f"The LoRA file {path} does not exist.")
    return given


def load_lora_state(path: str) -> dict[str, torch.Tensor]:
    """Read a LoRA and return its state dict keyed as ``pipe.load_lora_weights`` expects.

    Reads diffusers/PEFT files (``unet.``/``transformer.``/``text_encoder.`` keys), kohya/A1111 files
    (``lora_unet_*``, ``lora_transformer_*``) and the
    2023 attention-processor format of PAI and old diffusers (``...attn1.processor.to_q_lora.down.weight``,
    no prefix). diffusers would load the last one silently as nothing, so its keys get the ``unet.`` prefix, which
    diffusers' converter then maps onto the PEFT layers. Raises ``ModelUnavailable`` when the path cannot be
    read and ``InvalidParameters(code="invalid_lora")`` when it holds no LoRA weights in a known format.
    """
    file = lora_file(path)
    if file.suffix not in (".safetensors", *_TORCH_SUFFIXES):
        raise _invalid(f"{file.name} is not a LoRA weights file (.safetensors or .bin).")
    try:
        if file.suffix == ".safetensors":
            raw: Any = load_file(file, device="cpu")
        else:
            raw = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelUnavailable(f"Cannot read the LoRA file {file.name}.", detail=f"{file}: {str(e)[:200]}") from e
    if not isinstance(raw, dict):
        raise _invalid(f"{file.name} does not hold a state dict.")
    state = {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    lora_keys = [k for k in state if "lora" in k.lower()]
    if any(k.startswith(_DIFFUSERS_PREFIXES + _KOHYA_PREFIXES) for k in lora_keys):
        return state
    unet_keys = [k for k in lora_keys if k.startswith(_UNET_ROOTS)]
    if unet_keys:
        return {f"unet.{k}": state[k] for k in unet_keys}
    raise _invalid(f"{file.name} holds no LoRA weights in a known format.")


def tensor_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """The shapes of a torch-saved LoRA's tensors (``weights_only``); a safetensors file's are read from its
    header instead (``layout.safetensors_header``)."""
    raw = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(raw, dict):
        return {}
    return {k: tuple(v.shape) for k, v in raw.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def _signature(path: str) -> tuple[str, int, int]:
    """Identifies the file's current content cheaply, so a replaced file is loaded again."""
    file = lora_file(path)
    try:
        stat = file.stat()
    except OSError as e:
        raise ModelUnavailable(f"Cannot read the LoRA file {file}: {e}") from e
    return str(file.resolve()), stat.st_mtime_ns, stat.st_size


def _adapter_name(name: str) -> str:
    # PEFT adapter names become module-dict keys: no dots allowed. Slug for the logs, hash for uniqueness.
    slug = re.sub(r"[^0-9A-Za-z_]+", "_", name)[:32]
    return f"lora_{slug}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class _Loaded:
    adapter: str
    signature: tuple[str, int, int]


class LoraManager:
    """The LoRAs loaded into one pipeline, and the per-request choice among them.

    Call :meth:`activate` under the pipeline's lock at the start of every run, with that run's LoRAs (an empty
    list for none): a request's LoRAs never reach another request's image. At most ``max_loaded`` LoRAs stay
    loaded; the least recently used one is deleted to make room. The adapters live in the denoiser (UNet or
    transformer) and text encoders, so any pipeline sharing them (a per-request view) may be passed; given
    another denoiser (the model was reloaded), the manager forgets what it had loaded.
    """

    def __init__(self, max_loaded: int = DEFAULT_MAX_LOADED) -> None:
        if max_loaded < 1:
            raise ValueError("max_loaded must be at least 1")
        self.max_loaded = max_loaded
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()  # least recently used first
        self._denoiser: weakref.ref[Any] | None = None

    def loaded(self) -> list[str]:
        """Names of the loaded LoRAs, least recently used first."""
        return list(self._loaded)

    def activate(self, pipe: Pipeline, loras: list[ActiveLora]) -> None:
        """Make exactly ``loras`` (name, path, weight) active on ``pipe``, loading any not loaded yet."""
        denoiser = getattr(pipe, "unet", None) or pipe.transformer
        if self._denoiser is None or self._denoiser() is not denoiser:
            self._loaded.clear()
            self._denoiser = weakref.ref(denoiser)
        names = [name for name, _, _ in loras]
        if len(set(names)) != len(names):
            raise _invalid("A LoRA is listed twice.")
        if len(loras) > self.max_loaded:
            raise InvalidParameters(
                f"At most {self.max_loaded} LoRAs per request.", code="too_many_loras", field="loras"
            )
        if not all(math.isfinite(weight) for _, _, weight in loras):
            raise _invalid("A LoRA weight is not a finite number.")
        try:
            adapters = [self._ensure_loaded(pipe, name, path, set(names)) for name, path, _ in loras]
            if adapters:
                pipe.enable_lora()  # set_adapters alone does not undo disable_lora
                pipe.set_adapters(adapters, adapter_weights=[float(weight) for _, _, weight in loras])
            elif self._loaded:
                pipe.disable_lora()  # skips the LoRA layers entirely: the base output, bit for bit
        except BaseException:
            if self._loaded:
                pipe.disable_lora()  # never leave a half-set state behind
            raise

    def _ensure_loaded(self, pipe: Pipeline, name: str, path: str, keep: set[str]) -> str:
        signature = _signature(path)
        entry = self._loaded.get(name)
        if entry is not None and entry.signature == signature:
            self._loaded.move_to_end(name)
            return entry.adapter
        if entry is not None:  # the file was replaced
            pipe.delete_adapters(self._loaded.pop(name).adapter)
        state = load_lora_state(path)
        while len(self._loaded) >= self.max_loaded:
            victim = next(n for n in self._loaded if n not in keep)
            pipe.delete_adapters(self._loaded.pop(victim).adapter)
        adapter = _adapter_name(name)
        try:
            pipe.load_lora_weights(state, adapter_name=adapter)
        except (ValueError, RuntimeError, KeyError) as e:  # no matching layer, shape mismatch, odd keys
            _forget(pipe, adapter)
            raise _invalid(f"The LoRA {name!r} does not fit this model: {str(e)[:200]}") from e
        if not any(adapter in adapters for adapters in pipe.get_list_adapters().values()):
            _forget(pipe, adapter)
            raise _invalid(f"The LoRA {name!r} matches no layer of this model.")
        self._loaded[name] = _Loaded(adapter, signature)
        return adapter


def _forget(pipe: Pipeline, adapter: str) -> None:
    with contextlib.suppress(Exception):  # whatever a failed load left behind, if anything
        pipe.delete_adapters(adapter)
