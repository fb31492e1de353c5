"""``atelier lora``: train an image LoRA on a folder of captioned images, as a training job."""

from __future__ import annotations

from pathlib import Path

import click

from app.domain.errors import InvalidParameters
from app.domain.image_dataset import CAPTION_SUFFIXES, IMAGE_SUFFIXES, pack_image_archive
from app.domain.training import CHECKPOINT_EVERY, DEFAULTS, IMAGE_CROPS, TrainingKind, TrainingSpec
from app.entrypoints.cli.common import echo_json, open_atelier, quiet_option, to_plain
from app.entrypoints.cli.llm import cancel, fail_unless_succeeded, follow, jobs

MAX_FOLDER_BYTES = 512 * 1024 * 1024


_DEFAULT = DEFAULTS[TrainingKind.IMAGE_LORA]


@click.group()
def lora() -> None:
    """Train image LoRAs from your own pictures; the result is usable at once as <lora:NAME:0.8>."""


lora.add_command(jobs)  # training jobs of every kind, as `atelier llm jobs` lists them
lora.add_command(cancel)


def pack_folder(folder: Path, captions: Path | None) -> bytes:
    """The folder's images and caption files (``.txt`` beside each image, ``*.jsonl``) as a zip archive;
    ``captions``, a JSONL file elsewhere, goes in as ``metadata.jsonl``."""
    files: dict[str, bytes] = {}
    size = 0
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if not path.is_file() or any(part.startswith(".") for part in name.split("/")):
            continue
        if path.suffix.lower() in (*IMAGE_SUFFIXES, *CAPTION_SUFFIXES, ".jsonl"):
            files[name] = path.read_bytes()
            size += len(files[name])
            if size > MAX_FOLDER_BYTES:
                raise InvalidParameters(f"{folder} holds more than {MAX_FOLDER_BYTES // 2**20} MiB of images.")
    if not any(name.lower().endswith(IMAGE_SUFFIXES) for name in files):
        message = f"{folder} holds no image ({', '.join(IMAGE_SUFFIXES)})."
        raise InvalidParameters(message, code="invalid_file", field="images")
    if captions is not None:
        files["metadata.jsonl"] = captions.read_bytes()
    return pack_image_archive(files)


@lora.command("train")
@click.argument("images_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--base",
    required=True,
    help="A registered image model of a trainable family (all but HunyuanDiT and PixArt-Σ; e.g. demo).",
)
@click.option("--name", "result_name", required=True, help="The LoRA's name: <lora:NAME:0.8> in a prompt.")
@click.option(
    "--captions",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help='A JSONL file of {"file_name", "text"} captions  [default: a .txt beside each image, or a metadata.jsonl]',
)
@click.option("--trigger-word", default=None, help="Starts every caption; the caption of an image without one.")
@click.option("--epochs", default=_DEFAULT.epochs, show_default=True, type=int)
@click.option("--learning-rate", default=_DEFAULT.learning_rate, show_default=True, type=float)
@click.option("--batch-size", default=_DEFAULT.batch_size, show_default=True, type=int)
@click.option("--lora-rank", default=_DEFAULT.lora_rank, show_default=True, type=int)
@click.option("--resolution", default=None, type=int, help="Training size in pixels  [default: the model's own]")
@click.option("--crop", default="center", show_default=True, type=click.Choice(IMAGE_CROPS))
@click.option("--train-text-encoder", is_flag=True, help="Put a LoRA on the text encoder too.")
@click.option("--sample-prompt", "sample_prompts", multiple=True, help="Rendered at each checkpoint (repeatable).")
@click.option(
    "--checkpoint-every", default=CHECKPOINT_EVERY, show_default=True, type=int, help="Steps between checkpoints."
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--no-wait", is_flag=True, help="Queue the job and print its id (a worker process runs it).")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON (no progress output).")
@quiet_option
@click.pass_context
def train(
    ctx: click.Context,
    images_dir: str,
    base: str,
    result_name: str,
    captions: str | None,
    trigger_word: str | None,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    lora_rank: int,
    resolution: int | None,
    crop: str,
    train_text_encoder: bool,
    sample_prompts: tuple[str, ...],
    checkpoint_every: int,
    seed: int,
    no_wait: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Train a LoRA of the image model BASE on the pictures in IMAGES_DIR (PNG, JPEG, WebP; subfolders too), each
    captioned by a .txt file beside it (kohya's layout) or a metadata.jsonl. Without captions, give a
    --trigger-word. The result is registered as NAME: prompts use it as <lora:NAME:0.8>; its folder also holds
    NAME.safetensors in kohya's format for AUTOMATIC1111 and ComfyUI.

    The job is stored and runs in this process (or in a running server's); an interrupted run resumes from its
    last checkpoint when a worker starts again. Progress goes to stderr.
    """
    atelier = open_atelier(ctx, start_worker=not no_wait)
    archive = pack_folder(Path(images_dir), Path(captions) if captions else None)
    stored = atelier.training.upload(archive, f"{Path(images_dir).name}.zip", purpose="image-lora")
    extra = {
        "resolution": resolution,
        "crop": crop,
        "trigger_word": trigger_word,
        "train_text_encoder": train_text_encoder or None,
        "sample_prompts": list(sample_prompts) or None,
        "checkpoint_every": checkpoint_every,
    }
    spec = TrainingSpec(
        kind=TrainingKind.IMAGE_LORA,
        base_model=base,
        result_name=result_name,
        training_file=stored.id,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        lora_rank=lora_rank,
        seed=seed,
        extra={k: v for k, v in extra.items() if v is not None},
    )
    job = atelier.training.submit(spec)
    if not no_wait:
        job = follow(atelier, job, quiet or as_json, "training")
    if as_json:
        echo_json(to_plain(job))
    elif no_wait:
        click.echo(job.id)
    elif job.status.value == "succeeded":
        click.echo(
            f"trained {job.result_model} on {stored.records} images in {job.step} steps (loss {job.loss:.4f}): "
            f"use <lora:{job.result_model}:0.8>"
        )
    fail_unless_succeeded(job)


@lora.command("make-scenes")
@click.argument("out_dir", default="pink-scenes")
@click.option("--count", default=64, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def make_scenes(out_dir: str, count: int, seed: int, as_json: bool) -> None:
    """Write demo-world scenes of a colour the demo model has never seen (粉色, pink), each PNG with a .txt
    caption: a folder to train a LoRA on with `atelier lora train OUT_DIR --base demo --name pink`."""
    if not 1 <= count <= 10_000:
        raise InvalidParameters("--count must be 1 to 10000.", field="count")
    from app.lab.demo_world.concepts import write_scenes

    made = write_scenes(out_dir, count, seed)
    if as_json:
        echo_json(made)
    else:
        click.echo(f"{made['images']} scenes ({made['concept_images']} with {made['concept']}) in {made['out_dir']}")
