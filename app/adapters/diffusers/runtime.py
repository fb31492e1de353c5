"""Where and how a pipeline runs: its dtype, whether it lives on the GPU or is offloaded, VAE tiling and slicing,
and ``torch.compile``. One road to the GPU: the same decisions on every device, each a small function tested on
the CPU.

- **dtype** (``auto``): float32 on the CPU; on CUDA, bfloat16 for the families whose authors publish bf16
  weights (FLUX.1, SD3, Qwen-Image, Z-Image, CogView4, Sana, HunyuanDiT) where the GPU supports it, float16
  otherwise (SD, SDXL, Kolors, PixArt; their VAEs upcast themselves where their config says so).
- **placement**: on CUDA a pipeline moves to the GPU whole when its weights fit the model-cache budget, and is
  otherwise served with diffusers' model CPU offload (each component moves to the GPU for its turn), so a model
  larger than the budget still runs; ``offload`` forces either way.
- **VAE**: slicing decodes a batch one image at a time (peak memory of one image); tiling decodes large images
  in overlapping tiles, switched on per call for images above ``vae_tiling_pixels``.
- **compile**: ``torch.compile`` of the denoiser in place. The first call at each new shape compiles (tens of
  seconds to minutes); later calls are faster. A LoRA switch or a new size recompiles: worth it for a
  deployment that serves one model at a few sizes.
- **attention**: diffusers' default processors call ``torch.nn.functional.scaled_dot_product_attention``
  (flash / memory-efficient kernels on CUDA); :func:`attention_backends` reports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from app.domain.errors import InvalidParameters
from app.domain.families import Family

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
OFFLOAD = ("auto", "none", "model", "sequential")
BF16_FAMILIES = frozenset(
    {
        Family.FLUX,
        Family.SD3,
        Family.QWEN_IMAGE,
        Family.QWEN_IMAGE_EDIT,
        Family.Z_IMAGE,
        Family.COGVIEW4,
        Family.SANA,
        Family.HUNYUANDIT,
    }
)
DEFAULT_TILING_PIXELS = 1536 * 1536


@dataclass(frozen=True)
class RuntimeOptions:
    """A deployment's choices; ``auto`` everywhere picks what suits the device and the family."""

    device: str = "cpu"
    dtype: str = "auto"  # auto, float32, float16 or bfloat16
    offload: str = "auto"  # auto (when the weights exceed the cache budget), none, model or sequential
    compile: bool = False
    vae_slicing: bool = True
    vae_tiling_pixels: int = DEFAULT_TILING_PIXELS  # per image; 0 never tiles

    def __post_init__(self) -> None:
        if self.dtype != "auto" and self.dtype not in DTYPES:
            raise InvalidParameters(
                f"dtype must be auto, {', '.join(DTYPES)}; got {self.dtype!r}.", code="invalid_setting", field="dtype"
            )
        if self.offload not in OFFLOAD:
            raise InvalidParameters(
                f"offload must be one of {', '.join(OFFLOAD)}; got {self.offload!r}.",
                code="invalid_setting",
                field="offload",
            )

    @property
    def on_cuda(self) -> bool:
        return self.device.startswith("cuda")


def dtype_for(family: Family, options: RuntimeOptions, bf16_supported: bool | None = None) -> torch.dtype:
    """The dtype a family's pipeline is loaded in (see the module docstring)."""
    if options.dtype != "auto":
        return DTYPES[options.dtype]
    if not options.on_cuda:
        return torch.float32
    if family in BF16_FAMILIES:
        supported = torch.cuda.is_bf16_supported() if bf16_supported is None else bf16_supported
        if supported:
            return torch.bfloat16
    return torch.float16


def weights_bytes(path: str, dtype: torch.dtype) -> int:
    """The bytes a diffusers folder's weights take at ``dtype``, read from the safetensors headers alone
    (no tensor is loaded). Floating-point tensors count at ``dtype``'s size, others at their own."""
    size = torch.tensor([], dtype=dtype).element_size()
    total = 0
    for file in Path(path).glob("*/*.safetensors"):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                piece = handle.get_slice(key)
                count = 1
                for dim in piece.get_shape():
                    count *= dim
                stored = piece.get_dtype()
                total += count * (size if stored.startswith(("F", "BF")) else _size_of(stored))
    return total


def _size_of(safetensors_dtype: str) -> int:
    digits = "".join(c for c in safetensors_dtype if c.isdigit())
    return max(1, int(digits) // 8) if digits else 1


def placement(options: RuntimeOptions, weights: int, budget: int) -> str:
    """``device`` (the whole pipeline on the device), ``model`` or ``sequential`` CPU offload."""
    if not options.on_cuda:
        return "device"
    if options.offload == "none":
        return "device"
    if options.offload in ("model", "sequential"):
        return options.offload
    return "model" if weights > budget else "device"


def place(pipe: Any, where: str, device: str) -> Any:
    """Put a loaded pipeline where :func:`placement` decided."""
    if where == "model":
        pipe.enable_model_cpu_offload(device=device)
        return pipe
    if where == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
        return pipe
    return pipe.to(device)


def denoiser(pipe: Any) -> Any:
    return getattr(pipe, "unet", None) or pipe.transformer


def prepare(pipe: Any, options: RuntimeOptions) -> None:
    """Once per load: VAE slicing, and ``torch.compile`` of the denoiser when asked for."""
    vae = getattr(pipe, "vae", None)
    if options.vae_slicing and vae is not None and hasattr(vae, "enable_slicing"):
        vae.enable_slicing()
    if options.compile:
        denoiser(pipe).compile()


def tile_for(pipe: Any, width: int, height: int, options: RuntimeOptions) -> bool:
    """Switch VAE tiling on for this call's image size (above ``vae_tiling_pixels``) or off; True when on."""
    vae = getattr(pipe, "vae", None)
    if vae is None or not hasattr(vae, "enable_tiling"):
        return False
    tiled = 0 < options.vae_tiling_pixels < width * height
    if tiled:
        vae.enable_tiling()
    else:
        vae.disable_tiling()
    return tiled


def attention_backends(pipe: Any) -> set[str]:
    """The attention processor classes of the denoiser (diffusers' ``AttnProcessor2_0`` and the families'
    own processors run ``scaled_dot_product_attention``)."""
    processors = getattr(denoiser(pipe), "attn_processors", {})
    return {type(processor).__name__ for processor in processors.values()}
