"""Scheduler names (A1111 spelling, see ``app.domain.generation.SCHEDULERS``) to fresh diffusers schedulers."""

from __future__ import annotations

import importlib.util
from typing import Any

import diffusers
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from app.domain.generation import canonical_scheduler

# Class names with their overrides of the model's scheduler config.
_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": False}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": False}),
    "DPM++ 2M SDE Karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
    ),
    # A1111's "DPM++ SDE": the stochastic DPM-Solver++ on a Brownian tree (torchsde), one tree per image
    # seeded by the image's seed, so an image is the same in a batch and alone.
    "DPM++ SDE": ("DPMSolverSDEScheduler", {"use_karras_sigmas": False}),
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
    # For latent-consistency models and LoRAs (4-8 steps, guidance about 1-2).
    "LCM": ("LCMScheduler", {}),
    "DDIM": ("DDIMScheduler", {}),
    "DDPM": ("DDPMScheduler", {}),
    # PLMS as SD-1.x ships it; the Runge-Kutta warm-up fails below 4 steps ("could not be broadcast").
    "PNDM": ("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": ("UniPCMultistepScheduler", {}),
}


def make_scheduler(name: str | None, base: Any, seeds: list[int] | None = None) -> SchedulerMixin:
    """A new scheduler for one request, configured from the model's own scheduler ``base``.

    ``None`` gives the model's own scheduler class, and so does ``Euler`` on a flow-matching model (its
    own scheduler is the flow-matching Euler; the capability table refuses other names for those families).
    Every call returns a new instance: schedulers keep per-run state (timesteps, step index) and must never
    be shared between concurrent runs. ``seeds`` (one per image) seed the Brownian trees of the SDE sampler.
    """
    base_config = base.config
    own = base_config.get("_class_name") or type(base).__name__
    overrides: dict[str, Any] = {}
    if name is None or (own.startswith("FlowMatch") and canonical_scheduler(name) == "Euler"):
        class_name = own
    else:
        class_name, overrides = _SCHEDULERS[canonical_scheduler(name)]
    found = getattr(diffusers, class_name, None) if isinstance(class_name, str) else None
    if not (isinstance(found, type) and issubclass(found, SchedulerMixin)):
        raise ValueError(f"The model's scheduler config names no known diffusers scheduler: {class_name!r}.")
    if class_name == "DPMSolverSDEScheduler":
        if importlib.util.find_spec("torchsde") is None:
            raise ValueError("The DPM++ SDE samplers need torchsde: pip install 'atelier[sde]'.")
        overrides["noise_sampler_seed"] = seeds
    cls: Any = found  # every scheduler class is also a ConfigMixin, which SchedulerMixin does not say
    scheduler: SchedulerMixin = cls.from_config(base_config, **overrides)
    return scheduler
