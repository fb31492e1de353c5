"""Whether a LoRA fits the base model of a request, decided at submission so that a LoRA made for another
architecture is refused with a 4xx naming both (``lora_family_mismatch``), not as a failed job.

Two facts are recorded when models are registered (``app.adapters.diffusers.layout``):

- ``layers``: for a base model, every Linear and Conv layer of its denoiser (UNet or transformer), for a LoRA
  the layers it changes, each as a hash of its name and its input and output sizes, read from safetensors
  headers without loading a tensor. A LoRA fits exactly when all of its layers are the model's: that is what
  diffusers needs to load it, and it tells apart what family names cannot (an SD 1.x LoRA on an SD 2.x model,
  an SDXL LoRA on the tiny SDXL test model). This check decides whenever both sides have ``layers``.
- ``made_for``: the family the LoRA's file shows (kohya/model-spec metadata, layer names that only one family
  has, real models' widths), or None. Where ``layers`` cannot be compared (a base model registered before they
  were read, a ``.bin`` folder, a kohya file in the original model's layout), a LoRA whose family is known is
  refused for a model of another family. Families whose denoisers have the same shape share LoRAs:
  SD with InstructPix2Pix, SDXL with Kolors (their LoRA files cannot be told apart), Qwen-Image with its Edit.

Entries with neither (registered before, or unrecognised) are not checked here; the loader still refuses a
LoRA that matches no layer when the job runs.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.domain.errors import InvalidParameters
from app.domain.families import PROFILES, Family
from app.domain.models import ModelInfo

_SHARED = (
    frozenset({Family.SD, Family.INSTRUCT_PIX2PIX}),
    frozenset({Family.SDXL, Family.KOLORS}),
    frozenset({Family.QWEN_IMAGE, Family.QWEN_IMAGE_EDIT}),
)


def same_lora_family(lora: Family, model: Family) -> bool:
    """Whether LoRAs made for ``lora`` models are made for ``model`` models too."""
    return lora is model or any(lora in group and model in group for group in _SHARED)


def check_lora_fit(model: ModelInfo, loras: Iterable[ModelInfo]) -> None:
    """Refuse the first LoRA that does not fit ``model`` (``InvalidParameters``, code ``lora_family_mismatch``,
    field ``loras``), naming the LoRA, the family it was made for and the model's."""
    for lora in loras:
        _check(model, lora)


def _check(model: ModelInfo, lora: ModelInfo) -> None:
    fits = f"The LoRA {lora.name!r} does not fit {model.name!r}, a {PROFILES[model.family].label} model"
    made = f"it was made for {PROFILES[lora.made_for].label} models" if lora.made_for is not None else None
    if lora.layers is not None and model.layers is not None:
        missing = len(lora.layers - model.layers)
        if missing:
            what = f"the model lacks {missing} of the {len(lora.layers)} layers it changes (by name and sizes)"
            raise _mismatch(f"{fits}: {made or 'it was made for another architecture'}, and {what}.")
        return
    if lora.made_for is not None and not same_lora_family(lora.made_for, model.family):
        raise _mismatch(f"{fits}: {made}.")


def _mismatch(message: str) -> InvalidParameters:
    return InvalidParameters(
        f"{message} Choose a LoRA made for this model's family, or a model of the LoRA's.",
        code="lora_family_mismatch",
        field="loras",
    )
