"""Scheduler names (A1111 spelling, see ``app.domain.generation.SCHEDULERS``) to fresh diffusers schedulers."""

from __future__ import annotations

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
    "DDIM": ("DDIMScheduler", {}),
    "DDPM": ("DDPMScheduler", {}),
    # PLMS as SD-1.x ships it; the Runge-Kutta warm-up fails below 4 steps ("could not be broadcast").
    "PNDM": ("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": ("UniPCMultistepScheduler", {}),
}


def make_scheduler(name: str | None, base_config: Any) -> SchedulerMixin:
    """A new scheduler for one request, configured from the model's own scheduler config.

    ``None`` gives the model's own scheduler class. Every call returns a new instance: schedulers
    keep per-run state (timesteps, step index) and must never be shared between concurrent runs.
    """
    overrides: dict[str, Any] = {}
    if name is None:
        class_name = base_config.get("_class_name")
    else:
        class_name, overrides = _SCHEDULERS[canonical_scheduler(name)]
    found = getattr(diffusers, class_name, None) if isinstance(class_name, str) else None
    if not (isinstance(found, type) and issubclass(found, SchedulerMixin)):
        raise ValueError(f"The model's scheduler config names no known diffusers scheduler: {class_name!r}.")
    cls: Any = found  # every scheduler class is also a ConfigMixin, which SchedulerMixin does not say
    scheduler: SchedulerMixin = cls.from_config(base_config, **overrides)
    return scheduler
