"""Train the demo world's Chinese text-to-image model from scratch, on CPU, in the PAI-Diffusion layout.

Stages, each resumable from its last checkpoint in ``work_dir``:

1. ``vae``: an AutoencoderKL (64x64 -> 16x16x4) trained on freshly rendered scenes. It decodes the
   posterior *mean* (a sampled latent kept the decoder blurry), weighs shape pixels 5x (a flat
   background otherwise dominates the loss; at 10x, stray strokes were left in the background that
   read as extra shapes), and adds an L1 term to the MSE for sharper edges. Then the decoder alone
   is fine-tuned with the encoder frozen, which sharpens shapes without moving the latent space.
   The learning rate decays linearly to a tenth over each stage.
2. ``sharpen``: the decoder alone again (encoder frozen), with a loss that weighs each small
   object's pixels by its area ratio to a large one and adds weight on colour edges
   (``pixel_weights``): small stars and squares otherwise decoded as round blobs.
   ``shade``: once more, with the pixels of stated drop shadows weighing more (``shadow_mask``): a
   shadow is a faint crescent 2 px wide, and the decoder blurred it into the background, so the
   checker missed stated shadows in the reconstructions.
   ``palette``: once more, on scenes in every colour the world knows, pink too: the VAE is the model's codec,
   and a codec draws any colour, as Stable Diffusion's does (the decoder had drawn pink latents grey). The
   denoiser and the text tower still never see pink, so a LoRA can teach it (docs/training.md).
3. ``gate``: the OpenCV checker reads VAE reconstructions of rendered scenes; the UNet does not
   start unless they read back as well as ``gate_min`` (the VAE caps what the UNet can reach).
4. ``encode``: ``n_scenes`` training scenes (no held-out attribute combination) are rendered and
   encoded once; ``scaling_factor`` = 1 / std of the latents.
5. ``text``: the CLIP-architecture text tower over the bert-base-chinese vocabulary is pretrained
   to state what a caption says (``caption_targets``), then frozen, as SD freezes its text encoder.
6. ``unet``: the UNet is trained on v-prediction over a zero-terminal-SNR schedule with min-SNR-gamma
   style weighting (Hang et al. 2023, gamma 5; see ``loss_weights``), AdamW with warm-up and cosine
   decay to zero (so the last weights need no EMA), 10% caption dropout (the pipeline's
   unconditional input is the empty caption), and a fresh caption per scene and step (Chinese with
   varied phrasing, 20% English).
7. ``export``: a StableDiffusionPipeline folder (fp16 safetensors, BERT tokenizer, DPM-Solver++
   scheduler) that the same adapter loads as any PAI-Diffusion model.

Every random draw derives from ``seed`` and the step number, so a resumed run continues exactly
as an uninterrupted one would. This module runs the stages in order; the models are built in ``networks``,
the losses are in ``objectives``, the stages in ``vae_stages`` and ``unet_stages``, and the run's files in
``checkpoints``. docs/generation.md ("The demo world") has what each choice changed.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.adapters.demo_world.render import render
from app.adapters.diffusers.generator import quiet_libraries
from app.adapters.storage.folders import building
from app.demo_world.scenes import SceneSampler
from app.lab.demo_world.checkpoints import Checkpoints
from app.lab.demo_world.config import Progress, TrainConfig
from app.lab.demo_world.networks import (
    diffusers,
    from_tensor,
    new_text_encoder,
    new_unet,
    to_tensor,
    tokenizer,
    train_scheduler,
)
from app.lab.demo_world.unet_stages import pretrain_text_tower, train_unet
from app.lab.demo_world.vae_stages import (
    encode_scenes,
    load_vae,
    palette_decoder,
    shade_decoder,
    sharpen_decoder,
    train_decoder,
    train_vae,
)

# TrainConfig too: a caller builds one to run the Trainer.
MARKER_FILE = "atelier-demo.json"
STAGES = ("vae", "decoder", "sharpen", "shade", "palette", "gate", "encode", "text", "unet", "export")

_TRAINING_STAGES: dict[str, Callable[[Checkpoints, TrainConfig, Progress], None]] = {
    "vae": train_vae,
    "decoder": train_decoder,
    "sharpen": sharpen_decoder,
    "shade": shade_decoder,
    "palette": palette_decoder,
    "encode": encode_scenes,
    "text": pretrain_text_tower,
    "unet": train_unet,
}


class Trainer:
    """Runs the stages into ``work_dir`` and exports the pipeline to ``out_dir``."""

    def __init__(self, work_dir: str, config: TrainConfig, progress: Progress | None = None) -> None:
        self.work = Path(work_dir)
        self.config = config
        self.progress: Progress = progress or (lambda stage, done, total, info: None)
        self.files = Checkpoints(self.work, json.loads(json.dumps(asdict(config))))

    @property
    def state(self) -> dict[str, Any]:
        """The run's record (``state.json``): configuration, finished stages, seconds and results per stage."""
        return self.files.state

    @property
    def train_minutes(self) -> float:
        return self.files.train_minutes

    def run(
        self, until: str = "export", out_dir: str | None = None, gate: Callable[[Any], float] | None = None
    ) -> None:
        torch.set_num_threads(self.config.threads)
        quiet_libraries()
        for stage in STAGES:
            if stage in self.state["done"]:
                if stage == until:
                    return
                continue
            if stage == "gate":
                self._gate(gate)
            elif stage == "export":
                if out_dir is None:
                    raise ValueError("export needs an output folder")
                self.export(out_dir)
            else:
                _TRAINING_STAGES[stage](self.files, self.config, self.progress)
            if stage == until:
                return

    def load_vae(self) -> Any:
        return load_vae(self.files)

    def reconstruct(self, images: list[np.ndarray]) -> list[np.ndarray]:
        vae = self.load_vae()
        with torch.no_grad():
            x = to_tensor(images)
            rec = vae.decode(vae.encode(x).latent_dist.mode()).sample
        return from_tensor(rec)

    def _gate(self, gate: Callable[[Any], float] | None) -> None:
        t0 = time.monotonic()
        score = gate(self) if gate is not None else float("nan")
        self.progress("gate", 1, 1, {"exact": score})
        if gate is not None and score < self.config.gate_min:
            raise RuntimeError(
                f"VAE reconstructions read back {score:.1%} exact, below the gate of {self.config.gate_min:.0%}: "
                "train the decoder longer (--decoder-steps) before the UNet."
            )
        self.files.finish("gate", time.monotonic() - t0, exact=score)

    def pipeline(self, ckpt: dict[str, Any] | None = None) -> Any:
        """The pipeline from a UNet checkpoint, by default the latest (for export, or evaluation during training)."""
        tok = tokenizer()
        cfg = self.config
        text_encoder = new_text_encoder(tok, cfg)
        unet = new_unet(cfg)
        ckpt = ckpt or self.files.load("unet-ckpt")
        if ckpt is None:
            raise FileNotFoundError("no UNet checkpoint yet")
        unet.load_state_dict(ckpt["unet"])
        text_encoder.load_state_dict(ckpt["text_encoder"])
        scheduler = diffusers.DPMSolverMultistepScheduler.from_config(train_scheduler(cfg).config)
        return diffusers.StableDiffusionPipeline(
            vae=self.load_vae(),
            text_encoder=text_encoder.eval(),
            tokenizer=tok,
            unet=unet.eval(),
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )

    def export(self, out_dir: str) -> str:
        t0 = time.monotonic()
        ckpt = self.files.load("unet-ckpt")
        if ckpt is None:
            raise FileNotFoundError("no UNet checkpoint yet")
        pipe = self.pipeline(ckpt)
        pipe.to(torch.float16)
        target = Path(out_dir).resolve()
        with building(target) as tmp:
            pipe.save_pretrained(tmp, safe_serialization=True)
            marker = {
                "kind": "demo-world",
                "note": "trained by `atelier models train-demo` on the demo world's rendered scenes",
                "unet_steps": ckpt["step"],
                "train_minutes": round(self.train_minutes, 1),
                "recommended": {"steps": 20, "guidance_scale": 3.0, "size": 64},
                "config": json.loads(json.dumps(asdict(self.config))),
            }
            (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if "export" not in self.state["done"]:
            self.files.finish("export", time.monotonic() - t0)
        return str(target)


def checker_gate(trainer: Trainer) -> float:
    """Share of VAE reconstructions of rendered training scenes that the checker reads back exactly."""
    from app.adapters.demo_world.checker import OpenCvSceneReader
    from app.demo_world.integrity import integrity

    rng = random.Random(trainer.config.seed * 17 + 5)
    sampler = SceneSampler(rng, split="train", style_rate=0.2)
    scenes = [sampler.sample() for _ in range(trainer.config.gate_scenes)]
    images = [render(s, seed=i) for i, s in enumerate(scenes)]
    reader = OpenCvSceneReader()
    exact = 0
    for scene, image in zip(scenes, trainer.reconstruct(images), strict=True):
        exact += integrity(scene.without_styles(), reader.read(image).without_styles()).exact
    return exact / len(scenes)
