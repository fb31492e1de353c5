"""The SDXL refiner as an optional second stage of text-to-image (A1111's ``refiner_checkpoint`` and
``refiner_switch_at``; diffusers' "ensemble of expert denoisers").

The base model denoises the first ``switch`` fraction of the schedule (``denoising_end=switch``) and hands its
latents, still noisy, to the refiner, which runs the rest (``denoising_start=switch``) and decodes. Both stages
see the same prompts, guidance and seeded generators; ``steps`` is the whole schedule, split between them as
A1111 splits it, and the progress a request reports counts the steps of both. The refiner runs as an
``StableDiffusionXLImg2ImgPipeline`` over its loaded components with a fresh scheduler of the request's kind,
like every mode's per-request view.

The generator calls :func:`run_with_refiner` instead of calling the base view itself when a request names a
refiner (submission has already checked that the refiner is an SDXL refiner, the model SDXL and the mode
text-to-image).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.adapters.diffusers.modes import pipeline_for
from app.adapters.diffusers.schedulers import make_scheduler
from app.domain.errors import InvalidParameters
from app.domain.families import PROFILES, Family
from app.domain.specs import Mode

Pipeline = Any  # diffusers is untyped for a strict mypy
Report = Callable[[int, int], None]
# What both stages take from the base call's arguments (the refiner's size follows the latents).
_SHARED = ("prompt", "negative_prompt", "guidance_scale", "num_inference_steps", "num_images_per_prompt", "generator")


def refiner_view(
    refiner: Pipeline, family: Family, scheduler: str | None, seeds: list[int] | None = None, vae: Any = None
) -> Pipeline:
    """The refiner's image-to-image pipeline over its loaded components, with a fresh scheduler (``seeds``: one
    per image, for the samplers that draw their own noise) and the request's VAE, if it names one."""
    if family is not Family.SDXL_REFINER:
        raise InvalidParameters(
            f"A refiner must be a {PROFILES[Family.SDXL_REFINER].label} model, not a {PROFILES[family].label} one.",
            code="invalid_refiner",
            field="refiner",
        )
    fresh = make_scheduler(scheduler, refiner.scheduler, seeds)
    components = refiner.components if vae is None else {**refiner.components, "vae": vae}
    view = pipeline_for(family, Mode.IMG2IMG, components, fresh, None, dict(refiner.config))
    view.set_progress_bar_config(disable=True)
    return view


def run_with_refiner(
    base_view: Pipeline,
    refiner: Pipeline,
    family: Family,
    arguments: dict[str, Any],
    *,
    switch: float,
    scheduler: str | None,
    report: Report,
    seeds: list[int] | None = None,
    refiner_text: dict[str, Any] | None = None,
    vae: Any = None,
) -> Any:
    """The output of ``base_view(**arguments)`` with the last ``1 - switch`` of the schedule run by ``refiner``
    (the loaded refiner pipeline, of family ``family``) with a fresh ``scheduler`` (an A1111 name; None: its
    own; ``seeds`` as the base's scheduler got them). ``arguments`` are the base call's: prompts, guidance,
    size, ``num_inference_steps``, ``generator`` (one per image) and ``output_type``; ``report(done, total)``
    receives the progress of both stages (and may raise to stop). ``refiner_text``: the refiner's own prompt
    embeddings (from its text encoder), in place of the base call's prompts; ``vae``: the request's VAE, which
    decodes in place of the refiner's own."""
    steps = int(arguments["num_inference_steps"])
    view = refiner_view(refiner, family, scheduler, seeds, vae)
    counted = {"base": 0, "refiner": 0, "total": steps}

    def base_step(pipe: Pipeline, i: int, t: Any, values: dict[str, Any]) -> dict[str, Any]:
        counted["base"] = i + 1
        report(min(i + 1, steps), steps)  # the refiner's share is known once it starts
        return values

    def refiner_step(pipe: Pipeline, i: int, t: Any, values: dict[str, Any]) -> dict[str, Any]:
        counted["refiner"] = i + 1
        counted["total"] = counted["base"] + (getattr(pipe, "num_timesteps", None) or steps - counted["base"])
        report(counted["base"] + i + 1, counted["total"])
        return values

    base_arguments = {k: v for k, v in arguments.items() if k not in ("callback", "callback_steps")}
    base_arguments |= {"denoising_end": switch, "output_type": "latent", "callback_on_step_end": base_step}
    latents = base_view(**base_arguments).images
    refine = {k: arguments[k] for k in _SHARED if k in arguments}
    if refiner_text is not None:
        refine = {k: v for k, v in refine.items() if k not in ("prompt", "negative_prompt")} | refiner_text
    output = view(
        **refine,
        image=latents,
        denoising_start=switch,
        output_type=arguments.get("output_type", "np"),
        callback_on_step_end=refiner_step,
    )
    done = counted["base"] + counted["refiner"]
    if not counted["refiner"] and done:  # a refiner share too small for a step: the run is complete all the same
        report(done, done)
    return output
