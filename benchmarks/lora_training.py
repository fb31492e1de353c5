"""Teaching the demo model a colour it has never seen (粉色, pink) with a LoRA trained on rendered scenes, on this CPU.

1. The data: ``--scenes`` rendered scenes (64 by default): three quarters show pink shapes, a quarter are ordinary
   scenes of the demo world (regularisation images, as kohya users add them). Chinese captions with varied phrasing.
   A fifth of the (shape, position) pairs never appear in pink: the held-out prompts ask for exactly those.
   The scenes go through the upload path: images and sidecar captions packed into a zip, read back as the server
   reads an upload.
2. A LoRA of the denoiser's attention (``app/adapters/diffusers/lora_training.py``), timed.
3. Concept accuracy: held-out pink prompts, generated with the LoRA's kohya-format file loaded (the file A1111 users
   would take) at weight 1, read by the checker: the object's colour and shape right. Before: the same prompts
   without it (the model draws some other colour).
4. Base accuracy: the demo benchmark's held-out prompts (``benchmarks.demo_world``), with and without the LoRA: the
   drop of single-object colour+shape accuracy.

    python -m benchmarks.lora_training [--scenes 64] [--epochs 40] [--rank 8] [--learning-rate 1e-3]

Last line: {"concept_acc", "base_acc_drop", "train_minutes"}.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import emit, environment

DEMO = Path(__file__).resolve().parents[1] / "app" / "adapters" / "demo_world" / "model"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--train-text-encoder", action="store_true")
    parser.add_argument("--concept-prompts", type=int, default=100)
    parser.add_argument("--single", type=int, default=200, help="base benchmark single-object prompts")
    parser.add_argument("--two", type=int, default=100, help="base benchmark two-object prompts")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", default=None, help="write the concept prompts' images with the LoRA to this PNG")
    args = parser.parse_args(argv)
    env = environment(args.threads)

    from app.adapters.diffusers.lora import load_lora_state
    from app.adapters.diffusers.lora_training import ImageLoraSettings, train_image_lora
    from app.domain.image_dataset import pack_image_archive, parse_image_archive
    from app.lab.demo_world import concepts
    from app.lab.demo_world.evaluate import generate, heldout_prompts, load_pipeline, save_grid, score

    train = concepts.training_scenes(args.scenes, args.seed)
    images = parse_image_archive(pack_image_archive(concepts.scene_files(train, args.seed)))
    concept = concepts.concept_prompts(args.concept_prompts, args.seed + 1)
    base_prompts = heldout_prompts(args.single, args.two)
    settings = ImageLoraSettings(
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        rank=args.rank,
        train_text_encoder=args.train_text_encoder,
        checkpoint_every=10_000,
        seed=args.seed,
    )
    with tempfile.TemporaryDirectory() as scratch:
        losses: list[float] = []
        started = time.perf_counter()
        result = train_image_lora(
            str(DEMO),
            images,
            str(Path(scratch) / "pink"),
            str(Path(scratch) / "work"),
            settings,
            progress=lambda step, total, loss, _: losses.append(loss),
        )
        minutes = (time.perf_counter() - started) / 60

        pipe = load_pipeline(DEMO)

        def judged(prompts: list[Any], grid: str | None = None) -> dict[str, Any]:
            images = generate(pipe, prompts, steps=args.steps, guidance=args.guidance)
            if grid:
                save_grid(images, grid)
            return score(prompts, images)

        before = {"concept": judged(concept), "base": judged(base_prompts)}
        pipe.load_lora_weights(load_lora_state(str(Path(result.out_dir) / "pink.safetensors")), adapter_name="pink")
        pipe.set_adapters(["pink"], adapter_weights=[1.0])
        after = {"concept": judged(concept, args.grid), "base": judged(base_prompts)}

    key = "single_colour_shape_acc"
    detail = {
        "benchmark": "lora_training",
        **env,
        **vars(args),
        "images": len(images),
        "concept_scenes": sum(any(o.colour == concepts.CONCEPT for o in s.objects) for s in train),
        "steps": result.steps,
        "loss_first_epoch": round(sum(losses[: len(losses) // args.epochs]) / max(1, len(losses) // args.epochs), 4),
        "loss_last_epoch": round(result.loss, 4),
        "concept_acc_before": before["concept"][key],
        "concept_position_acc": after["concept"]["position_acc"],
        "base_before": before["base"],
        "base_after": after["base"],
    }
    headline = {
        "concept_acc": after["concept"][key],
        "base_acc_drop": round(before["base"][key] - after["base"][key], 4),
        "train_minutes": round(minutes, 2),
    }
    emit(detail, headline)
    return headline


if __name__ == "__main__":
    main()
