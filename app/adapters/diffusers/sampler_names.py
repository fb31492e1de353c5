"""The A1111 sampler names of diffusers scheduler classes, for the infotext of a job that ran with the model's own
scheduler: only the image generator knows which class that is, so the table lives beside it, not in the domain.
"""

from __future__ import annotations

from typing import Any

# From the table of diffusers' scheduler overview. Atelier's spelling where it has the sampler (PNDM, which A1111
# calls PLMS; DDPM), so the name reads back into ``sampler_name``.
_DIFFUSERS_SAMPLERS = {
    "EulerAncestralDiscreteScheduler": "Euler a",
    "EulerDiscreteScheduler": "Euler",
    "HeunDiscreteScheduler": "Heun",
    "LMSDiscreteScheduler": "LMS",
    "KDPM2DiscreteScheduler": "DPM2",
    "KDPM2AncestralDiscreteScheduler": "DPM2 a",
    "DPMSolverSDEScheduler": "DPM++ SDE",
    "DPMSolverMultistepScheduler": "DPM++ 2M",
    "DDIMScheduler": "DDIM",
    "DDPMScheduler": "DDPM",
    "PNDMScheduler": "PNDM",
    "UniPCMultistepScheduler": "UniPC",
    "LCMScheduler": "LCM",
}


def sampler_of(class_name: str, config: dict[str, Any] | None = None) -> str | None:
    """The A1111 sampler name of a diffusers scheduler class and its config (``use_karras_sigmas``, DPM-Solver's
    ``algorithm_type``); ``None`` for a class A1111 has no name for."""
    name = _DIFFUSERS_SAMPLERS.get(class_name)
    if name is None:
        return None
    config = config or {}
    if name == "DPM++ 2M" and str(config.get("algorithm_type", "")).startswith("sde-"):
        name = "DPM++ 2M SDE"
    if config.get("use_karras_sigmas"):
        name += " Karras"
    return name
