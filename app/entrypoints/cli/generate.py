"""``atelier generate``: submit a job in this process, show its progress, save the images."""

from __future__ import annotations

import shutil
from pathlib import Path

import click
from tqdm import tqdm

from app.domain.generation import SCHEDULERS, parse_size
from app.domain.jobs import GenerationJob, JobStatus
from app.entrypoints.cli.common import echo_json, job_dict, open_atelier


@click.command()
@click.argument("prompt")
@click.option("--negative", default="", help="Negative prompt.")
@click.option("--model", default=None, help="Registered model name (default: the deployment's default, 'demo').")
@click.option("--size", default=None, help="WIDTHxHEIGHT, multiples of 8 (default: the model's native size).")
@click.option("--steps", default=20, show_default=True, type=int, help="Denoising steps (1-150).")
@click.option("--guidance", default=7.5, show_default=True, type=float, help="Classifier-free guidance scale.")
@click.option("--seed", default=None, type=int, help="Seed of the first image (random and recorded when omitted).")
@click.option("--n", "num_images", default=1, show_default=True, type=int, help="Number of images (1-8).")
@click.option("--scheduler", default=None, help=f"One of: {', '.join(SCHEDULERS)} (default: the model's own).")
@click.option(
    "--out", "out_dir", default=".", show_default=True, type=click.Path(file_okay=False), help="Folder for PNGs."
)
@click.option("--json", "as_json", is_flag=True, help="Print the finished job as JSON.")
@click.pass_context
def generate(
    ctx: click.Context,
    prompt: str,
    negative: str,
    model: str | None,
    size: str | None,
    steps: int,
    guidance: float,
    seed: int | None,
    num_images: int,
    scheduler: str | None,
    out_dir: str,
    as_json: bool,
) -> None:
    """Generate images for PROMPT (Chinese or any language) and save them to --out.

    The job is recorded in the database like any API job: `atelier jobs show ID` finds it.
    """
    width, height = parse_size(size) if size else (None, None)
    atelier = open_atelier(ctx, start_worker=True, recover=False)
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
    )
    with tqdm(total=100, desc="generating", unit="%", disable=as_json, leave=False) as bar:

        def show(current: GenerationJob) -> None:
            bar.set_postfix_str(current.status.value)
            bar.update(round(current.progress * 100) - bar.n)

        try:
            job = atelier.wait(job.id, on_progress=show)
        except KeyboardInterrupt:
            atelier.cancel(job.id)
            raise click.ClickException(f"interrupted; job {job.id} cancelled") from None
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
