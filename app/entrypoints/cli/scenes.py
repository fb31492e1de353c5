"""``atelier scenes``: the demo world the shipped model was trained on, and its checker."""

from __future__ import annotations

import random

import click

from app.demo_world.scenes import SceneObject, SceneSampler, caption
from app.entrypoints.cli.common import AliasOption, echo_json, open_atelier


@click.group()
def scenes() -> None:
    """The demo world: what the 'demo' model draws and how its images are read back."""


def _describe(obj: SceneObject) -> str:
    parts = [obj.size or "?", obj.colour, obj.shape, "at", obj.position or "?"]
    if obj.styles:
        parts.append(f"({', '.join(obj.styles)})")
    return " ".join(parts)


@scenes.command("read")
@click.argument("image")
@click.option("--caption", "caption_text", default=None, help="Score the image against this caption.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def read(ctx: click.Context, image: str, caption_text: str | None, as_json: bool) -> None:
    """Read the shapes IMAGE shows (a file, or a result image id), with the OpenCV checker.

    \b
    atelier scenes read out.png --caption "一个红色的圆形在中间"
    """
    reading = open_atelier(ctx).read_scene(image, caption_text)
    if as_json:
        echo_json(reading)
        return
    click.echo(f"background: {reading.seen.background or 'unknown'}")
    for obj in reading.seen.objects:
        click.echo(f"- {_describe(obj)}")
    if not reading.seen.objects:
        click.echo("- no shape seen")
    if reading.integrity is not None:
        verdict = "exact" if reading.integrity.exact else "not exact"
        click.echo(f"content integrity: {reading.integrity.score:.2f} ({verdict})")


@scenes.command("sample")
@click.option(
    "--count",
    "-n",  # the first spelling, kept working
    "count",
    cls=AliasOption,
    hidden_names=["-n"],
    default=5,
    show_default=True,
    type=click.IntRange(0),
    help="How many captions.",
)
@click.option("--seed", default=None, type=int, help="Seed (default: random).")
@click.option("--english", is_flag=True, help="English captions.")
def sample(count: int, seed: int | None, english: bool) -> None:
    """Print captions of random scenes: the phrasing the demo model understands."""
    rng = random.Random(seed)
    sampler = SceneSampler(rng)
    for _ in range(count):
        click.echo(caption(sampler.sample(), rng, "en" if english else "zh"))
