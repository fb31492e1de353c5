"""``atelier models``: the model registry."""

from __future__ import annotations

import os

import click

from app.entrypoints.cli.common import echo_json, open_atelier


@click.group()
def models() -> None:
    """Models known by name."""


KINDS = click.Choice(["base", "lora", "controlnet"])


@models.command("list")
@click.option("--kind", type=KINDS, default=None, help="Only models of this kind.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_models(ctx: click.Context, kind: str | None, as_json: bool) -> None:
    """Registered base models, LoRAs and ControlNets."""
    infos = open_atelier(ctx).models(kind)
    if as_json:
        echo_json(infos)
        return
    if not infos:
        click.echo("no models registered; run `atelier models init-demo`", err=True)
    for info in infos:
        size = f"{info.default_size}px" if info.kind.value == "base" else "-"
        click.echo(f"{info.name:<24} {info.kind.value:<10} {size:<6} {info.tokenizer:<8} {info.source}")


@models.command("add")
@click.argument("name")
@click.argument("path")
@click.option("--kind", type=KINDS, default="base", show_default=True, help="What PATH holds.")
@click.option("--replace", is_flag=True, help="Overwrite a model registered under the same name.")
@click.option(
    "--config",
    default=None,
    help="For a single-file checkpoint: a diffusers folder, or a registered model, of the same architecture, "
    "whose configs and tokenizer are used to convert it.",
)
@click.pass_context
def add(ctx: click.Context, name: str, path: str, kind: str, replace: bool, config: str | None) -> None:
    """Register PATH as NAME: a diffusers folder (base model or ControlNet), a single-file .safetensors/.ckpt
    checkpoint (converted once, see --config), a LoRA file or folder (.safetensors, or the PAI .bin format),
    or a hub id such as org/model when a network exists."""
    info = open_atelier(ctx).add_model(name, path, replace=replace, kind=kind, config=config)
    detail = f"{info.default_size}px, {info.tokenizer} tokenizer" if kind == "base" else kind
    if kind == "base" and os.path.isfile(info.source):
        detail += f", converted from {info.source}"
    click.echo(f"registered {info.name}: {info.path} ({detail})")


@models.command("init-demo")
@click.option("--force", is_flag=True, help="Rebuild even if it exists.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random weights.")
@click.pass_context
def init_demo(ctx: click.Context, force: bool, seed: int) -> None:
    """Build the tiny random-init Chinese demo model and register it as 'demo'.

    Its images are noise: it exists so everything runs without downloads.
    Register real weights with `atelier models add`.
    """
    info = open_atelier(ctx).init_demo(force=force, seed=seed)
    click.echo(f"demo model ready: {info.path}")
