"""The VAE stages of demo-world training: the autoencoder, then four decoder-only stages (``decoder``,
``sharpen``, ``shade``, ``palette``) that sharpen what it draws, and widen its colours, without moving its latent
space, and the encoding of the training scenes the UNet learns from.

Each stage resumes from its last checkpoint, and every random draw derives from the seed and the step, so a
resumed stage continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import random
import time
from typing import Any

import torch

from app.adapters.demo_world.render import render
from app.demo_world.scenes import SceneSampler
from app.demo_world.vocabulary import ALL_COLOURS, COLOURS, NEW_COLOURS
from app.lab.demo_world.checkpoints import Checkpoints
from app.lab.demo_world.config import Progress, TrainConfig
from app.lab.demo_world.networks import new_vae, to_tensor
from app.lab.demo_world.objectives import render_batch, shadow_mask, vae_loss


def train_autoencoder(
    files: Checkpoints,
    cfg: TrainConfig,
    progress: Progress,
    name: str,
    steps: int,
    decoder_only: bool,
    lr: float,
    seed_offset: int,
    small_object: float = 0.0,
    edge: float = 0.0,
    shadow: float = 0.0,
    style_rate: float = 0.2,
    colours: tuple[str, ...] = COLOURS,
) -> None:
    """Train the VAE (``decoder_only``: its decoder, the encoder frozen) for ``steps`` on rendered scenes, as
    stage ``name``: resumable from its checkpoint, the result saved as ``vae``."""
    torch.manual_seed(cfg.seed)
    vae = new_vae()
    base = files.load("vae") if decoder_only else None
    if decoder_only:
        if base is None:
            raise FileNotFoundError("no trained VAE yet")
        vae.load_state_dict(base["model"])
        vae.requires_grad_(False)
        vae.decoder.requires_grad_(True)
        vae.post_quant_conv.requires_grad_(True)
    params = [p for p in vae.parameters() if p.requires_grad]
    # The decoder continues from where the joint stage's decayed rate ended: restarting it at half the
    # joint rate undid the joint stage (stray blobs came back).
    opt = torch.optim.Adam(params, lr=lr)
    # Linear decay to a tenth over the stage: a constant rate left blotches in flat backgrounds.
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - 0.9 * min(1.0, s / max(1, steps)))
    ckpt = files.load(f"{name}-ckpt")
    step = 0
    if ckpt is not None:
        vae.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        sched.load_state_dict(ckpt["sched"])
        step = ckpt["step"]
    vae.train()
    last = time.monotonic()
    while step < steps:
        scenes, x, seeds = render_batch(cfg.seed + seed_offset, step, cfg.vae_batch, style_rate, colours)
        torch.manual_seed(cfg.seed * 7919 + step)
        extra = shadow * shadow_mask(scenes, seeds) if shadow else None
        loss = vae_loss(vae, x, scenes, small_object, edge, extra)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        sched.step()
        step += 1
        progress(name, step, steps, {"loss": float(loss.detach())})
        if step % cfg.checkpoint_every == 0 or step == steps:
            state = {"model": vae.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step}
            files.save(f"{name}-ckpt", state)
            now = time.monotonic()
            files.add_seconds(name, now - last)
            last = now
    payload = {"model": vae.state_dict()}
    if base is not None and "scaling_factor" in base:
        payload["scaling_factor"] = base["scaling_factor"]
    files.save("vae", payload)
    files.finish(name, time.monotonic() - last)


def train_vae(files: Checkpoints, cfg: TrainConfig, progress: Progress) -> None:
    """Stage ``vae``: encoder and decoder together."""
    train_autoencoder(files, cfg, progress, "vae", cfg.vae_steps, decoder_only=False, lr=cfg.vae_lr, seed_offset=3)


def train_decoder(files: Checkpoints, cfg: TrainConfig, progress: Progress) -> None:
    """Stage ``decoder``: the decoder alone, the encoder frozen."""
    train_autoencoder(
        files, cfg, progress, "decoder", cfg.decoder_steps, decoder_only=True, lr=cfg.decoder_lr, seed_offset=7
    )


def sharpen_decoder(files: Checkpoints, cfg: TrainConfig, progress: Progress) -> None:
    """Stage ``sharpen``: the decoder alone, small objects and colour edges weighing more."""
    train_autoencoder(
        files,
        cfg,
        progress,
        "sharpen",
        cfg.sharpen_steps,
        decoder_only=True,
        lr=cfg.sharpen_lr,
        seed_offset=11,
        small_object=cfg.small_object_weight,
        edge=cfg.edge_weight,
    )


def shade_decoder(files: Checkpoints, cfg: TrainConfig, progress: Progress) -> None:
    """Stage ``shade``: the decoder alone, the pixels of drop shadows weighing more."""
    train_autoencoder(
        files,
        cfg,
        progress,
        "shade",
        cfg.shade_steps,
        decoder_only=True,
        lr=cfg.shade_lr,
        seed_offset=13,
        small_object=cfg.small_object_weight,
        edge=cfg.edge_weight,
        shadow=cfg.shadow_weight,
        style_rate=cfg.shade_style_rate,
    )


def palette_decoder(files: Checkpoints, cfg: TrainConfig, progress: Progress) -> None:
    """Stage ``palette``: the decoder alone on scenes in every colour the world knows, the new ones too
    (``ALL_COLOURS``). The VAE is the model's image codec, and a codec should draw any colour, as Stable
    Diffusion's does: the denoiser and the text tower still never see a new colour, so a LoRA can teach one
    (docs/training.md). Without it the decoder drew pink latents as grey or white."""
    train_autoencoder(
        files,
        cfg,
        progress,
        "palette",
        cfg.palette_steps,
        decoder_only=True,
        lr=cfg.palette_lr,
        seed_offset=17,
        small_object=cfg.small_object_weight,
        edge=cfg.edge_weight,
        style_rate=cfg.shade_style_rate,
        colours=ALL_COLOURS + NEW_COLOURS,  # a new colour twice as often as an old one
    )


def load_vae(files: Checkpoints) -> Any:
    """The latest trained VAE, with its latent scaling factor once the ``encode`` stage has set it."""
    vae = new_vae()
    payload = files.load("vae")
    if payload is None:
        raise FileNotFoundError("no trained VAE yet")
    vae.load_state_dict(payload["model"])
    if "scaling_factor" in payload:
        vae.register_to_config(scaling_factor=payload["scaling_factor"])
    return vae.eval()


def encode_scenes(files: Checkpoints, cfg: TrainConfig, progress: Progress) -> None:
    """Render ``n_scenes`` training scenes, encode them once and set the latent scaling factor (1 / std)."""
    t0 = time.monotonic()
    vae = load_vae(files)
    rng = random.Random(cfg.seed * 31 + 1)
    sampler = SceneSampler(rng, split="train", style_rate=0.2)
    scenes = [sampler.sample() for _ in range(cfg.n_scenes)]
    seeds = [rng.randrange(1 << 30) for _ in scenes]
    latents = []
    with torch.no_grad():
        for i in range(0, len(scenes), 64):
            images = [render(s, seed=k) for s, k in zip(scenes[i : i + 64], seeds[i : i + 64], strict=True)]
            latents.append(vae.encode(to_tensor(images)).latent_dist.mode())
            progress("encode", min(i + 64, len(scenes)), len(scenes), {})
    mus = torch.cat(latents)
    factor = 1.0 / float(mus.std())
    payload = files.load("vae")
    assert payload is not None
    payload["scaling_factor"] = factor
    files.save("vae", payload)
    files.save("latents", {"latents": mus * factor, "scenes": scenes})
    files.finish("encode", time.monotonic() - t0, scaling_factor=factor)
