"""``atelier models``: the model registry."""

from __future__ import annotations

import os

import click

from app.domain.models import ModelInfo, ModelKind
from app.entrypoints.cli.common import Progress, echo_json, echo_table, open_atelier, quiet_option, to_plain


@click.group()
def models() -> None:
    """Models known by name."""


KINDS = click.Choice([kind.value for kind in ModelKind])


@models.command("list")
@click.option("--kind", type=KINDS, default=None, help="Only models of this kind.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_models(ctx: click.Context, kind: str | None, as_json: bool) -> None:
    """Registered base models, LoRAs, ControlNets, VAEs, language models and LLM adapters, under a header naming
    the columns (--json for scripts). FAMILY is the family a model is, or a LoRA or ControlNet was made for; a VAE's
    is its latent space; a language model's its architecture, an LLM adapter's the model it was trained on."""
    infos = open_atelier(ctx).models(kind)
    if as_json:
        # The layer fingerprints that decide whether a LoRA fits are internal (hundreds of hashes): left out.
        echo_json([{k: v for k, v in to_plain(info).items() if k != "layers"} for info in infos])
        return
    rows = [
        [
            info.name,
            info.kind.value,
            _family_column(info),
            _size_column(info),
            info.tokenizer,
            info.source,
        ]
        for info in infos
    ]
    echo_table(("NAME", "KIND", "FAMILY", "SIZE", "TOKENIZER", "SOURCE"), rows)
    if not infos:
        click.echo("no models registered; run `atelier models init-demo`", err=True)


def _size_column(info: ModelInfo) -> str:
    if info.kind is ModelKind.BASE:
        return f"{info.default_size}px"
    if info.kind is ModelKind.LLM and info.context_length:
        return f"{info.context_length} tokens"
    return "-"


def _family_column(info: ModelInfo) -> str:
    if info.kind is ModelKind.LLM:
        return info.architecture or "-"
    if info.kind is ModelKind.LLM_LORA:
        return info.base_model or "-"
    if info.kind in (ModelKind.BASE, ModelKind.CONTROLNET):
        return info.family.value
    if info.kind is ModelKind.VAE:
        return info.latent or "-"
    return info.made_for.value if info.made_for else "-"


@models.command("add")
@click.argument("name")
@click.argument("path")
@click.option("--kind", type=KINDS, default="base", show_default=True, help="What PATH holds.")
@click.option("--replace", is_flag=True, help="Overwrite a model registered under the same name.")
@click.option(
    "--config",
    default=None,
    help="For a single-file checkpoint or VAE: a diffusers folder, or a registered model, of the same "
    "architecture, whose configs (and tokenizer) are used to convert it.",
)
@click.pass_context
def add(ctx: click.Context, name: str, path: str, kind: str, replace: bool, config: str | None) -> None:
    """Register PATH as NAME: a diffusers folder (base model or ControlNet), a single-file .safetensors/.ckpt
    checkpoint (converted once, see --config), a LoRA file or folder (.safetensors, or the PAI .bin format),
    a VAE (--kind vae: an autoencoder folder, a model folder whose vae/ to use, or an A1111 .safetensors/.pt
    VAE file, converted once), a language model (--kind llm: a transformers folder, or a .gguf file converted
    once), a PEFT LoRA adapter of a language model (--kind llm-lora: its folder; chat requests name it as
    MODEL:NAME), or a hub id such as org/model when a network exists."""
    info = open_atelier(ctx).add_model(name, path, replace=replace, kind=kind, config=config)
    detail = f"{info.default_size}px, {info.tokenizer} tokenizer" if kind == "base" else kind
    if kind == "llm":
        detail = f"{info.architecture}, {info.context_length or '?'} tokens of context"
    if kind in ("base", "vae", "llm") and os.path.isfile(info.source):
        detail += f", converted from {info.source}"
    click.echo(f"registered {info.name}: {info.path} ({detail})")


@models.command("remove")
@click.argument("name")
@click.pass_context
def remove(ctx: click.Context, name: str) -> None:
    """Unregister NAME (a folder converted for it is deleted; your own files stay)."""
    info = open_atelier(ctx).remove_model(name)
    click.echo(f"removed {info.name} ({info.kind.value})")


@models.command("init-demo")
@click.option("--force", is_flag=True, help="Rebuild even if it exists.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random-init weights.")
@click.pass_context
def init_demo(ctx: click.Context, force: bool, seed: int) -> None:
    """Register the demo models, so every mode runs without downloads.

    'demo' is the demo world's Chinese text-to-image model, trained by Atelier and shipped with it
    (`atelier scenes sample` prints prompts it understands); 'demo-tiny' is a random-init model of
    the same family (its images are noise); 'canny' and 'depth' are random-init ControlNets and
    'demo-style-a'/'-b' random LoRAs shaped for 'demo'. Register real weights with `atelier models add`.
    """
    info = open_atelier(ctx).init_demo(force=force, seed=seed)
    click.echo(f"demo model ready: {info.path}")


@models.command("train-demo")
@click.option("--out", default=None, help="Folder for the trained pipeline  [default: <data dir>/models/demo-trained]")
@click.option("--work", default=None, help="Folder for checkpoints  [default: <data dir>/training/demo-world]")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of every random draw.")
@click.option("--unet-steps", default=None, type=int, help="UNet steps (batch 32)  [default: 6500]")
@click.option("--text-steps", default=None, type=int, help="Text-tower pretraining steps (batch 64)  [default: 800]")
@click.option("--vae-steps", default=None, type=int, help="VAE steps  [default: 2000]")
@click.option("--decoder-steps", default=None, type=int, help="VAE decoder fine-tuning steps  [default: 600]")
@click.option(
    "--sharpen-steps",
    default=None,
    type=int,
    help="Decoder steps weighing small objects and edges more (encoder frozen)  [default: 3000]",
)
@click.option(
    "--shade-steps",
    default=None,
    type=int,
    help="Decoder steps weighing drop-shadow pixels more (encoder frozen)  [default: 1500]",
)
@click.option(
    "--palette-steps",
    default=None,
    type=int,
    help="Decoder steps on scenes in every colour, pink too (encoder frozen)  [default: 1200]",
)
@click.option("--scenes", default=None, type=int, help="Rendered training scenes  [default: 20000]")
@click.option("--threads", default=2, show_default=True, type=int, help="CPU threads.")
@click.option(
    "--gate-min",
    default=None,
    type=click.FloatRange(0, 1),
    help="Share of VAE reconstructions the checker must read back exactly before the UNet starts  [default: 0.8]",
)
@click.option("--restart", is_flag=True, help="Discard the checkpoints in --work and start over.")
@click.option("--register", default=None, help="Register the result under this name (e.g. demo).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (no progress output).")
@quiet_option
@click.pass_context
def train_demo(
    ctx: click.Context,
    out: str | None,
    work: str | None,
    seed: int,
    unet_steps: int | None,
    text_steps: int | None,
    vae_steps: int | None,
    decoder_steps: int | None,
    sharpen_steps: int | None,
    shade_steps: int | None,
    palette_steps: int | None,
    scenes: int | None,
    threads: int,
    gate_min: float | None,
    restart: bool,
    register: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Train the demo world's Chinese text-to-image model from scratch on this machine.

    Stages: VAE, decoder fine-tuning, decoder sharpening (small objects and edges weigh more), decoder
    shading (drop shadows weigh more), decoder palette (scenes in every colour, so the codec draws pink, which the
    denoiser never sees), a checker gate on VAE reconstructions, encoding the rendered
    scenes, text-tower pretraining (to state what a caption says; then frozen), UNet, export
    (diffusers folder, fp16 safetensors). About 2 hours on 2 idle cores with the defaults,
    which reproduce the model shipped as 'demo'.
    Interrupted runs resume from the last checkpoint when started again with the same options.
    Progress goes to stderr: a bar per stage on a terminal, one line per finished stage elsewhere.
    """
    overrides: dict[str, float] = {"seed": seed, "threads": threads}
    for key, value in (
        ("gate_min", gate_min),
        ("unet_steps", unet_steps),
        ("text_steps", text_steps),
        ("vae_steps", vae_steps),
        ("decoder_steps", decoder_steps),
        ("sharpen_steps", sharpen_steps),
        ("shade_steps", shade_steps),
        ("palette_steps", palette_steps),
        ("n_scenes", scenes),
    ):
        if value is not None:
            overrides[key] = value
    bars: dict[str, Progress] = {}

    def progress(stage: str, done: int, total: int, info: dict[str, float]) -> None:
        if stage not in bars:
            for bar in bars.values():  # the stage before is done
                bar.close()
                bar.finish()
            bars.clear()
            bars[stage] = Progress(stage, "scenes" if stage == "encode" else "steps", quiet or as_json, leave=True)
        bars[stage].update(done, total, info)

    try:
        from app.lab.demo_world.runs import train_demo as run

        result = run(
            open_atelier(ctx).container,
            out_dir=out,
            work_dir=work,
            progress=progress,
            restart=restart,
            register=register,
            **overrides,
        )
        for bar in bars.values():
            bar.close()
            bar.finish()
    except (ValueError, RuntimeError) as e:
        raise click.ClickException(str(e)) from e
    finally:
        for bar in bars.values():
            bar.close()
    if as_json:
        echo_json(result)
    else:
        click.echo(f"trained in {result['train_minutes']} min: {result['path']}")
