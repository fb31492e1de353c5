"""The conditioning and denoising stages of demo-world training: the text tower is pretrained to state what a
caption says (``caption_targets``) and frozen, then the UNet learns v-prediction on the encoded scenes over a
zero-terminal-SNR schedule with Min-SNR weighting, warm-up and cosine decay, and caption dropout.

Each stage resumes from its last checkpoint (the text tower's is short enough to rerun whole), and every
random draw derives from the seed and the step, so a resumed run continues exactly.
"""

from __future__ import annotations

import json
import math
import random
import time

import torch
import torch.nn.functional as F

from app.demo_world.scenes import SceneSampler, caption
from app.lab.demo_world.checkpoints import Checkpoints
from app.lab.demo_world.config import Progress, TrainConfig
from app.lab.demo_world.networks import MAX_TOKENS, new_text_encoder, new_unet, tokenizer, train_scheduler
from app.lab.demo_world.objectives import TARGET_CLASSES, caption_targets, loss_weights, text_exactness, text_loss


def pretrain_text_tower(files: Checkpoints, cfg: TrainConfig, progress: Progress) -> None:
    """Pretrain the text tower to state what a caption says (``caption_targets``), from its pooled
    output and from the mean of its token states, so every token state carries it to the UNet."""
    t0 = time.monotonic()
    tok = tokenizer()
    torch.manual_seed(cfg.seed + 11)
    text_encoder = new_text_encoder(tok, cfg)
    heads = torch.nn.ModuleList([torch.nn.Linear(cfg.text_width, sum(TARGET_CLASSES)) for _ in range(2)])
    params = [*text_encoder.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.text_lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * step / cfg.text_steps))
    )
    text_encoder.train()
    losses: list[float] = []
    for step in range(cfg.text_steps):
        rng = random.Random(cfg.seed * 7_919 + step)
        sampler = SceneSampler(rng, split="train", style_rate=0.2)
        caps = [
            caption(sampler.sample(), rng, "en" if rng.random() < cfg.english_rate else "zh")
            for _ in range(cfg.text_batch)
        ]
        batch = tok(caps, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
        target = torch.stack([caption_targets(c) for c in caps])
        out = text_encoder(batch.input_ids, attention_mask=batch.attention_mask)
        mask = batch.attention_mask.unsqueeze(-1).float()
        mean = (out.last_hidden_state * mask).sum(1) / mask.sum(1)
        loss = text_loss(heads[0](out.pooler_output), target) + text_loss(heads[1](mean), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        progress("text", step + 1, cfg.text_steps, {"loss": sum(losses[-50:]) / len(losses[-50:])})
    accuracy = text_exactness(text_encoder, heads[1], tok, cfg.seed)
    files.save("text", {"text_encoder": text_encoder.state_dict()})
    files.finish("text", time.monotonic() - t0, exact=accuracy)


def train_unet(files: Checkpoints, cfg: TrainConfig, progress: Progress) -> None:
    """Train the UNet on the encoded scenes, conditioned on the text tower (frozen after its pretraining)."""
    tok = tokenizer()
    torch.manual_seed(cfg.seed + 11)
    text_encoder = new_text_encoder(tok, cfg)
    pretrained = files.load("text")
    if pretrained is not None:
        text_encoder.load_state_dict(pretrained["text_encoder"])
    unet = new_unet(cfg)
    if cfg.freeze_text:
        text_encoder.requires_grad_(False)
    params = [*unet.parameters(), *(p for p in text_encoder.parameters() if p.requires_grad)]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-2)

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.unet_steps - cfg.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    data = files.load("latents")
    assert data is not None
    latents, scenes = data["latents"], data["scenes"]
    noise_sched = train_scheduler(cfg)
    v_prediction = noise_sched.config.prediction_type == "v_prediction"
    alphas = noise_sched.alphas_cumprod
    snr_all = alphas / (1 - alphas)
    empty = tok([""], padding="max_length", max_length=MAX_TOKENS, return_tensors="pt").input_ids
    step = 0
    ckpt = files.load("unet-ckpt")
    if ckpt is not None:
        unet.load_state_dict(ckpt["unet"])
        text_encoder.load_state_dict(ckpt["text_encoder"])
        opt.load_state_dict(ckpt["opt"])
        sched.load_state_dict(ckpt["sched"])
        step = ckpt["step"]
    unet.train()
    text_encoder.train(not cfg.freeze_text)
    last = time.monotonic()
    losses: list[float] = []
    while step < cfg.unet_steps:
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_033 + step)
        rng = random.Random(cfg.seed * 999_983 + step)
        idx = torch.randint(0, len(scenes), (cfg.batch,), generator=gen)
        caps = [caption(scenes[int(i)], rng, "en" if rng.random() < cfg.english_rate else "zh") for i in idx.tolist()]
        ids = tok(caps, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt").input_ids
        drop = torch.rand(cfg.batch, generator=gen) < cfg.caption_dropout
        ids[drop] = empty
        z0 = latents[idx]
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, 1000, (cfg.batch,), generator=gen)
        noisy = noise_sched.add_noise(z0, noise, t)
        with torch.set_grad_enabled(not cfg.freeze_text):
            states = text_encoder(ids).last_hidden_state
        pred = unet(noisy, t, states).sample
        target = noise_sched.get_velocity(z0, noise, t) if v_prediction else noise
        weight = loss_weights(snr_all[t], cfg.min_snr_gamma, v_prediction)
        loss = (F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3)) * weight).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        step += 1
        losses.append(float(loss.detach()))
        progress("unet", step, cfg.unet_steps, {"loss": sum(losses[-50:]) / len(losses[-50:])})
        if step % cfg.checkpoint_every == 0 or step == cfg.unet_steps:
            files.save(
                "unet-ckpt",
                {
                    "unet": unet.state_dict(),
                    "text_encoder": text_encoder.state_dict(),
                    "opt": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "step": step,
                },
            )
            now = time.monotonic()
            files.add_seconds("unet", now - last)
            last = now
            with (files.work / "loss.jsonl").open("a") as f:
                f.write(json.dumps({"step": step, "loss": sum(losses[-50:]) / len(losses[-50:])}) + "\n")
    files.finish("unet", time.monotonic() - last)
