"""``atelier generate``: submit a job in this process, show its progress, save the images."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import click

from app.domain.generation import SCHEDULERS, GenerationParams, parse_size
from app.domain.jobs import GenerationJob, JobStatus
from app.domain.specs import HiresSpec, HiresUpscaler, Mode, OutpaintSpec
from app.entrypoints.cli.common import AliasOption, Progress, echo_json, job_dict, open_atelier, quiet_option
from app.entrypoints.library import Atelier


@click.command()
@click.argument("prompt")
@click.option("--negative", default="", help="Negative prompt.")
@click.option("--model", default=None, help="Registered model name (default: the deployment's default, 'demo').")
@click.option("--size", default=None, help="WIDTHxHEIGHT, multiples of 8 (default: the model's native size).")
@click.option("--steps", default=None, type=int, help="Denoising steps (1-150; default: the model's recommended).")
@click.option(
    "--guidance",
    default=None,
    type=float,
    help="Classifier-free guidance scale  [default: the model's recommended scale (demo: 3), else 7.5]",
)
@click.option("--seed", default=None, type=int, help="Seed of the first image (random and recorded when omitted).")
@click.option(
    "--num-images",
    "--n",  # the first spelling, kept working
    "num_images",
    cls=AliasOption,
    hidden_names=["--n"],
    default=1,
    show_default=True,
    type=int,
    help="Number of images (1-8).",
)
@click.option("--scheduler", default=None, help=f"One of: {', '.join(SCHEDULERS)} (default: the model's own).")
@click.option("--init-image", type=click.Path(exists=True, dir_okay=False), help="Image for img2img (or to inpaint).")
@click.option("--mask", type=click.Path(exists=True, dir_okay=False), help="Inpainting mask: white = repaint.")
@click.option("--strength", default=0.75, show_default=True, type=float, help="Denoising strength (img2img etc.).")
@click.option("--resize-mode", type=click.Choice(["stretch", "crop", "pad"]), default="stretch", show_default=True)
@click.option("--outpaint", metavar="L,R,U,D", help="Pixels to add on each side of --init-image, then paint.")
@click.option("--outpaint-fill", type=click.Choice(["copy", "reflect"]), default="copy", show_default=True)
@click.option(
    "--control",
    "controls",
    multiple=True,
    metavar="KIND:IMAGE",
    help="A ControlNet unit: canny:edges.png, depth:photo.png or none:map.png; repeat for several units.",
)
@click.option(
    "--control-model",
    "control_models",
    multiple=True,
    help="Registered ControlNet (default: the one named like KIND); once for every unit, or once per --control.",
)
@click.option(
    "--control-scale",
    "control_scales",
    multiple=True,
    type=float,
    help="ControlNet conditioning scale (1.0); once for every unit, or once per --control.",
)
@click.option("--lora", "loras", multiple=True, metavar="NAME:WEIGHT", help="A registered LoRA; repeatable.")
@click.option("--hires", "hires_scale", type=float, metavar="SCALE", help="Hires fix: enlarge SCALE times.")
@click.option(
    "--hires-upscaler",
    type=click.Choice(["latent", "latent-nearest", "lanczos", "nearest"]),
    default="latent",
    show_default=True,
)
@click.option("--hires-steps", type=int, default=0, show_default=True, help="Second-pass steps (0: as --steps).")
@click.option("--hires-denoise", type=float, default=0.7, show_default=True, help="Second-pass denoising strength.")
@click.option("--clip-skip", type=int, default=None, help="A1111's clip skip (CLIP families): 2 = penultimate layer.")
@click.option("--vae", default=None, help="A registered VAE (models add NAME PATH --kind vae) in place of the model's.")
@click.option(
    "--out", "out_dir", default=".", show_default=True, type=click.Path(file_okay=False), help="Folder for PNGs."
)
@click.option("--json", "as_json", is_flag=True, help="Print the finished job as JSON (no progress output).")
@quiet_option
@click.pass_context
def generate(
    ctx: click.Context,
    prompt: str,
    negative: str,
    model: str | None,
    size: str | None,
    steps: int | None,
    guidance: float | None,
    seed: int | None,
    num_images: int,
    scheduler: str | None,
    init_image: str | None,
    mask: str | None,
    strength: float,
    resize_mode: str,
    outpaint: str | None,
    outpaint_fill: str,
    controls: tuple[str, ...],
    control_models: tuple[str, ...],
    control_scales: tuple[float, ...],
    loras: tuple[str, ...],
    hires_scale: float | None,
    hires_upscaler: str,
    hires_steps: int,
    hires_denoise: float,
    clip_skip: int | None,
    vae: str | None,
    out_dir: str,
    as_json: bool,
    quiet: bool,
) -> None:
    """Generate images for PROMPT (Chinese or any language) and save them to --out.

    The mode follows from the options: --control (ControlNet), --outpaint, --mask (inpaint),
    --init-image (img2img), none (text-to-image). The job is recorded in the database like any
    API job: `atelier jobs show ID` finds it. Progress goes to stderr: a bar counting denoising steps
    on a terminal, one line when the job is done anywhere else, nothing with --quiet or --json.
    """
    width, height = parse_size(size) if size else (None, None)
    atelier = open_atelier(ctx, start_worker=True, recover=False)
    inputs = _inputs(atelier, init_image, mask)
    inputs["controls"] = _controls(atelier, controls, control_models, control_scales)
    if outpaint:
        inputs["outpaint"] = OutpaintSpec.parse(outpaint, outpaint_fill)
    if hires_scale is not None:
        inputs["hires"] = HiresSpec(hires_scale, HiresUpscaler(hires_upscaler), hires_steps, hires_denoise)
    if clip_skip is not None:
        inputs["clip_skip"] = clip_skip
    if vae is not None:
        inputs["vae"] = vae
    job = atelier.submit(
        prompt,
        negative_prompt=negative,
        model=model,
        width=width,
        height=height,
        steps=steps,
        guidance_scale=guidance,
        seed=seed,
        num_images=num_images,
        scheduler=scheduler,
        strength=strength,
        resize_mode=resize_mode,
        loras=list(loras),
        **inputs,
    )
    progress = Progress("generating", "steps", quiet=quiet or as_json)
    total = denoising_steps(job.params)

    def show(current: GenerationJob) -> None:
        progress.update(round(current.progress * total), total, status=current.status.value)

    try:
        job = atelier.wait(job.id, on_progress=show)
    except KeyboardInterrupt:
        atelier.cancel(job.id)
        raise click.ClickException(f"interrupted; job {job.id} cancelled") from None
    finally:
        progress.close()
    if job.status is JobStatus.SUCCEEDED:
        progress.finish()
    saved = []
    for image in job.images:
        target = Path(out_dir) / f"{image.id}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(atelier.container.images().path(image.id), target)
        saved.append(str(target))
    if as_json:
        data = job_dict(job)
        for image, path in zip(data["images"], saved, strict=True):
            image["path"] = path
        echo_json(data)
    elif job.status is JobStatus.SUCCEEDED:
        click.echo(f"job {job.id} succeeded (seed {job.seed})")
        for path in saved:
            click.echo(path)
    if job.status is not JobStatus.SUCCEEDED:
        message = job.error_message or job.status.value
        raise click.ClickException(f"job {job.id} {job.status.value}: {message}")


def denoising_steps(params: GenerationParams) -> int:
    """The denoising steps a job runs (what its progress counts): ``steps``, or with an init image and
    a strength below 1 about ``steps * strength`` (at least one), as the diffusers pipelines do."""
    if params.mode in (Mode.IMG2IMG, Mode.INPAINT, Mode.OUTPAINT) and params.strength < 1:
        return max(1, int(params.step_count * params.strength))
    if params.hires is not None:
        return params.step_count + max(1, int((params.hires.steps or params.step_count) * params.hires.denoise))
    return params.step_count


def _inputs(atelier: Atelier, init_image: str | None, mask: str | None) -> dict[str, Any]:
    """Upload the image files the options name; return the request fields that refer to them."""
    fields: dict[str, Any] = {}
    if init_image:
        fields["init_image"] = atelier.upload(Path(init_image).read_bytes()).id
    if mask:
        fields["mask_image"] = atelier.upload(Path(mask).read_bytes()).id
    return fields


def _per_unit(values: tuple[Any, ...], count: int, default: Any, option: str) -> list[Any]:
    """One value per ControlNet unit from an option given never, once (for every unit) or once per unit."""
    if not values:
        return [default] * count
    if len(values) == 1:
        return list(values) * count
    if len(values) != count:
        raise click.BadParameter(f"give it once, or once per --control ({count})", param_hint=option)
    return list(values)


def _controls(
    atelier: Atelier, controls: tuple[str, ...], models: tuple[str, ...], scales: tuple[float, ...]
) -> list[dict[str, Any]]:
    """Upload each --control image; the units with their models and scales."""
    units = []
    models_ = _per_unit(models, len(controls), None, "--control-model")
    scales_ = _per_unit(scales, len(controls), 1.0, "--control-scale")
    for control, model, scale in zip(controls, models_, scales_, strict=True):
        kind, sep, path = control.partition(":")
        if not sep or not Path(path).is_file():
            raise click.BadParameter("use KIND:IMAGE with an existing image file", param_hint="--control")
        image = atelier.upload(Path(path).read_bytes()).id
        units.append({"image": image, "kind": kind, "model": model, "scale": scale})
    return units
