"""Training a LoRA of an image model on captioned images, as diffusers' ``train_text_to_image_lora.py`` does.

- **Data.** Each image is brought to the training size by a centre crop (the shorter side scaled to the resolution)
  or, with ``crop="bucket"``, to the bucket of about the same area whose aspect ratio is nearest its own (sides in
  steps the model can take), so wide and tall pictures are not cut to squares. Latents are computed once (the VAE's
  mean, scaled) and, unless the text encoder is trained too, so are the caption embeddings.
- **Model.** A PEFT LoRA on the denoiser's attention projections (``to_q``, ``to_k``, ``to_v``, ``to_out.0``, and
  the text stream's of SD3's and FLUX's joint attention),
  optionally also on the text encoder's (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``); alpha equals the rank,
  so the file's scale is 1 wherever it is loaded.
- **Objective.** The loss of the model's own training: for a UNet, a timestep drawn uniformly, the latents noised
  by the model's scheduler (as DDPM), and the mean squared error against the noise (or the velocity, for a
  v-prediction model); for a flow-matching transformer, rectified flow (``_flow_loss``). AdamW at a constant
  learning rate after a linear warm-up.
- **Checkpoints and samples.** Every ``checkpoint_every`` steps (and on cancel) the LoRA, the optimizer and the random
  states are written (``app/adapters/training_state.py``): a run started again resumes to the very weights an
  uninterrupted run reaches. With sample prompts, images are rendered at each checkpoint with a fixed seed.
- **Result.** ``pytorch_lora_weights.safetensors`` (the diffusers/PEFT format ``load_lora_weights`` reads) and
  ``NAME.safetensors``, the same LoRA in kohya's format, for AUTOMATIC1111, ComfyUI and kohya's tools.

The families trained are those whose profile has ``lora_training``: Stable Diffusion 1.x/2.x (and the
PAI-Diffusion models of that family, and the demo model), SDXL and Kolors (UNets, the noise-prediction loss), and
SD3, FLUX, Qwen-Image, Z-Image, CogView4 and Sana (flow-matching transformers, the rectified-flow loss of diffusers'
DreamBooth scripts for them, each transformer given its inputs as its pipeline gives them). SDXL and Kolors
condition on the pooled text embedding too and on their size and crop ids (original size, top-left crop, target
size: the bucket's size, crop 0 0, as kohya's trainer sets them); with the text encoders trained, both of SDXL's get
a LoRA, saved as ``lora_te1_``/``lora_te2_`` in the kohya file. The transformer families and Kolors are saved in the
diffusers format only.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from app.adapters.training_state import resume_checkpoint, save_checkpoint, write_whole
from app.domain.errors import InvalidParameters, require
from app.domain.families import Family, profile, require_lora_training
from app.domain.image_dataset import CaptionedImage, training_captions
from app.domain.training import CHECKPOINT_EVERY, DEFAULTS, SAMPLE_STEPS, TrainingKind, TrainingSpec
from app.ports.training import Trainer, TrainOutcome

Progress = Callable[[int, int, float, float | None], None]  # step, total, loss, validation loss (none here)
Samples = Callable[[int, list[str]], None]  # step, the sample files written
UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
CROPS = ("center", "bucket")
WEIGHTS = "pytorch_lora_weights.safetensors"


FLOW_TARGETS = (  # the joint-attention projections of SD3's and FLUX's blocks, as diffusers' DreamBooth scripts
    "attn.to_q",
    "attn.to_k",
    "attn.to_v",
    "attn.to_out.0",
    "attn.add_q_proj",
    "attn.add_k_proj",
    "attn.add_v_proj",
    "attn.to_add_out",
)


@dataclass(frozen=True)
class _Architecture:
    pipeline: str  # the diffusers pipeline class
    text_encoders: tuple[str, ...]  # the encoders a LoRA may be put on (``train_text_encoder``), in order
    added_conditions: bool = False  # SDXL's (and Kolors') pooled text embedding and size/crop ids
    flow: str = ""  # "": a UNet predicting noise (DDPM); else the flow-matching transformer's inputs: sd3, flux, sana
    targets: tuple[str, ...] = UNET_TARGETS  # the denoiser's layers the LoRA goes on
    kohya: bool = True  # also written in kohya's format (the UNet families A1111 loads)
    pads_with_tokens: bool = False  # a batch's captions padded with pad tokens the encoder reads (CogView4's GLM)
    vae_shift: bool = True  # latents shifted by the VAE's shift_factor (CogView4's pipeline only scales)

    @property
    def denoiser(self) -> str:
        return "transformer" if self.flow else "unet"


ARCHITECTURES = {
    Family.SD: _Architecture("StableDiffusionPipeline", ("text_encoder",)),
    Family.SDXL: _Architecture("StableDiffusionXLPipeline", ("text_encoder", "text_encoder_2"), added_conditions=True),
    Family.KOLORS: _Architecture("KolorsPipeline", (), added_conditions=True, kohya=False),
    Family.SD3: _Architecture(
        "StableDiffusion3Pipeline", ("text_encoder", "text_encoder_2"), flow="sd3", targets=FLOW_TARGETS, kohya=False
    ),
    Family.FLUX: _Architecture("FluxPipeline", ("text_encoder",), flow="flux", targets=FLOW_TARGETS, kohya=False),
    Family.SANA: _Architecture("SanaPipeline", (), flow="sana", kohya=False),
    Family.QWEN_IMAGE: _Architecture("QwenImagePipeline", (), flow="qwen-image", kohya=False),
    Family.Z_IMAGE: _Architecture("ZImagePipeline", (), flow="z-image", kohya=False),
    Family.COGVIEW4: _Architecture(
        "CogView4Pipeline", (), flow="cogview4", kohya=False, pads_with_tokens=True, vae_shift=False
    ),
}
_PACKED = ("flux", "qwen-image")  # transformers that read the latents in 2x2 patches packed into a sequence
_DEFAULT = DEFAULTS[TrainingKind.IMAGE_LORA]


@dataclass(frozen=True)
class ImageLoraSettings:
    epochs: int = _DEFAULT.epochs
    learning_rate: float = _DEFAULT.learning_rate
    batch_size: int = _DEFAULT.batch_size
    rank: int = _DEFAULT.lora_rank
    resolution: int | None = None  # None: the model's native size
    crop: str = "center"
    trigger_word: str | None = None
    train_text_encoder: bool = False
    sample_prompts: tuple[str, ...] = ()
    sample_steps: int = SAMPLE_STEPS
    sample_guidance: float | None = None  # None: the model's recommended scale
    checkpoint_every: int = CHECKPOINT_EVERY
    seed: int = 0

    def __post_init__(self) -> None:
        require(
            (self.epochs >= 1, "epochs must be at least 1.", "epochs"),
            (self.learning_rate > 0, "learning_rate must be positive.", "learning_rate"),
            (1 <= self.batch_size <= 256, "batch_size must be 1 to 256.", "batch_size"),
            (1 <= self.rank <= 256, "lora_rank must be 1 to 256.", "lora_rank"),
            (self.resolution is None or 32 <= self.resolution <= 2048, "resolution must be 32 to 2048.", "resolution"),
            (self.crop in CROPS, f"crop must be one of {', '.join(CROPS)}.", "crop"),
            (1 <= self.sample_steps <= 100, "sample_steps must be 1 to 100.", "sample_steps"),
            (len(self.sample_prompts) <= 8, "At most 8 sample prompts.", "sample_prompts"),
            (self.checkpoint_every >= 1, "checkpoint_every must be at least 1.", "checkpoint_every"),
        )


@dataclass(frozen=True)
class ImageLoraResult:
    out_dir: str
    steps: int
    loss: float  # the mean loss of the last epoch
    resumed_from: int
    finished: bool


def check_family(base: str) -> dict[str, Any]:
    """What the base folder says of itself (``inspect_model``), refused (``unsupported_training``) when LoRAs of its
    family cannot be trained here. A job's base was checked at submit time; this guards direct calls."""
    from app.adapters.diffusers.layout import inspect_model

    details = inspect_model(base)
    require_lora_training(details["family"])
    return details


def buckets(resolution: int, multiple: int, max_ratio: float = 2.0) -> list[tuple[int, int]]:
    """(width, height) pairs of about ``resolution``² pixels, sides multiples of ``multiple``, aspect at most
    ``max_ratio``: kohya's aspect-ratio buckets."""
    area = resolution * resolution
    found = {(resolution, resolution)}
    width = multiple
    while width <= resolution * max_ratio:
        height = max(multiple, round(area / width / multiple) * multiple)
        if max(width / height, height / width) <= max_ratio:
            found.add((width, height))
        width += multiple
    return sorted(found)


def _fit(image: Any, width: int, height: int) -> Any:
    """``image`` scaled to cover ``width`` x ``height`` and centre-cropped to it."""
    from PIL import Image

    scale = max(width / image.width, height / image.height)
    size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


def _decode(item: CaptionedImage) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(item.data)) as opened:
            return opened.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InvalidParameters(f"{item.name} is not an image that can be read.", field="training_file") from e


def _sizes(images: list[Any], settings: ImageLoraSettings, native: int, multiple: int) -> list[tuple[int, int]]:
    resolution = settings.resolution or native
    resolution = max(multiple, resolution // multiple * multiple)
    if settings.crop == "center":
        return [(resolution, resolution)] * len(images)
    options = buckets(resolution, multiple)

    def nearest(image: Any) -> tuple[int, int]:
        aspect = image.width / image.height
        return min(options, key=lambda wh: abs(math.log(wh[0] / wh[1] / aspect)))

    return [nearest(image) for image in images]


def _batches(sizes: list[tuple[int, int]], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """An epoch's batches: indices shuffled by (seed, epoch), grouped by size, the batches shuffled again."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(sizes)))
    rng.shuffle(order)
    groups: dict[tuple[int, int], list[int]] = {}
    for index in order:
        groups.setdefault(sizes[index], []).append(index)
    batches = [g[i : i + batch_size] for g in groups.values() for i in range(0, len(g), batch_size)]
    rng.shuffle(batches)
    return batches


def _load(architecture: _Architecture, base: str, device: str) -> Any:
    import diffusers

    dtype = torch.float32 if device == "cpu" else torch.float16
    extra: dict[str, Any] = {}
    if architecture.pipeline == "StableDiffusionPipeline":  # training neither needs nor loads the checker
        extra = {"safety_checker": None, "requires_safety_checker": False}
    pipe = getattr(diffusers, architecture.pipeline).from_pretrained(base, dtype=dtype, local_files_only=True, **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _add_lora(module: Any, targets: Sequence[str], rank: int) -> list[torch.nn.Parameter]:
    from peft import LoraConfig

    present = [name for name, _ in module.named_modules()]
    found = [t for t in targets if any(name == t or name.endswith("." + t) for name in present)]
    if not found:
        raise InvalidParameters(f"The model has none of the layers a LoRA is put on ({', '.join(targets)}).")
    module.requires_grad_(False)
    module.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=found))
    parameters = [p for p in module.parameters() if p.requires_grad]
    for parameter in parameters:  # trained in fp32 even where the model runs in half precision
        parameter.data = parameter.data.float()
    return parameters


def train_image_lora(
    base: str,
    images: Sequence[CaptionedImage],
    out_dir: str,
    work_dir: str,
    settings: ImageLoraSettings,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    samples: Samples | None = None,
) -> ImageLoraResult:
    """Train a LoRA of the model folder ``base`` on ``images`` (captions as ``training_captions`` makes them) and
    write it to ``out_dir``; checkpoints and sample images go to ``work_dir``. Raises ``InvalidParameters`` for an
    image that does not decode, a family that cannot be trained, and captions missing without a trigger word."""
    details = check_family(base)
    guidance = settings.sample_guidance or float(details.get("default_guidance") or 7.5)
    architecture = ARCHITECTURES[Family(details["family"])]
    if settings.train_text_encoder and not architecture.text_encoders:
        label = profile(details["family"]).label
        message = f"The text encoder of {label} models is not trained here: leave train_text_encoder off."
        raise InvalidParameters(message, field="train_text_encoder")
    captions = training_captions(list(images), settings.trigger_word, "training_file")
    decoded = [_decode(item) for item in images]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pipe = _load(architecture, base, device)
    denoiser, vae = getattr(pipe, architecture.denoiser), pipe.vae
    latent_channels = getattr(vae.config, "latent_channels", None) or vae.config.z_dim  # Qwen-Image's: z_dim
    channels = latent_channels * (4 if architecture.flow in _PACKED else 1)
    if denoiser.config.in_channels != channels:
        message = "An inpainting or control model cannot be trained here: train on its text-to-image base."
        raise InvalidParameters(message, code="unsupported_training", field="base_model")
    encoders = [getattr(pipe, name) for name in _all_encoders(pipe)]
    factor = pipe.vae_scale_factor
    multiple = factor * _patch(architecture, denoiser)
    native = int(details.get("default_size") or profile(details["family"]).size)
    sizes = _sizes(decoded, settings, native, multiple)
    for module in (denoiser, vae, *encoders):
        module.requires_grad_(False)
    latents = _latents(pipe, decoded, sizes, device, architecture.vae_shift)
    scheduler = _training_scheduler(architecture, pipe)
    torch.manual_seed(settings.seed)
    parameters = _add_lora(denoiser, architecture.targets, settings.rank)
    if settings.train_text_encoder:
        for name in architecture.text_encoders:
            parameters += _add_lora(getattr(pipe, name), TEXT_TARGETS, settings.rank)
        conditions = None
    else:
        with torch.no_grad():
            conditions = [_condition(pipe, architecture, [caption], device) for caption in captions]
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=1e-2)
    per_epoch = len(_batches(sizes, settings.batch_size, settings.seed, 0))
    total = per_epoch * settings.epochs
    warmup = min(50, max(1, total // 20))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    generator = torch.Generator().manual_seed(settings.seed)
    fingerprint = {**asdict(settings), "images": len(images), "captions": captions, "sizes": sizes}
    step = resumed = resume_checkpoint(work_dir, fingerprint, parameters, optimizer, schedule, generator)
    losses: list[float] = []
    while step < total:
        epoch, index = divmod(step, per_epoch)
        batch = _batches(sizes, settings.batch_size, settings.seed, epoch)[index]
        clean = torch.cat([latents[i] for i in batch])
        if conditions is not None:
            condition = {key: _stack([conditions[i][key] for i in batch]) for key in conditions[batch[0]]}
            if architecture.pads_with_tokens and len({conditions[i]["context"].shape[1] for i in batch}) > 1:
                with torch.no_grad():  # lengths differ: encoded together, as the pipeline pads a batch
                    condition = _condition(pipe, architecture, [captions[i] for i in batch], device)
        else:
            condition = _condition(pipe, architecture, [captions[i] for i in batch], device)
        if architecture.flow == "cogview4":  # original and target size (pixels, height first); crop 0 0
            condition["sizes"] = torch.tensor([[h, w] for w, h in (sizes[i] for i in batch)], device=device)
        if architecture.added_conditions:
            ids = [[h, w, 0, 0, h, w] for w, h in (sizes[i] for i in batch)]  # original size, crop, target size
            condition["time_ids"] = torch.tensor(ids, dtype=torch.float32, device=device)
        denoiser.train()
        if architecture.flow:
            loss = _flow_loss(architecture, pipe, scheduler, clean, condition, generator, guidance)
        else:
            loss = _loss(denoiser, scheduler, clean, condition, generator)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        losses = (losses if index else []) + [float(loss.detach())]
        if progress is not None:
            progress(step, total, losses[-1], None)
        stop = cancelled() and step < total
        if stop or step % settings.checkpoint_every == 0 or step == total:
            save_checkpoint(work_dir, fingerprint, step, parameters, optimizer, schedule, generator)
            if settings.sample_prompts and samples is not None:
                denoiser.eval()
                samples(step, _render_samples(pipe, settings, guidance, Path(work_dir) / "samples", step))
        if stop:
            return ImageLoraResult(out_dir, step, sum(losses) / len(losses), resumed, False)
    _save(pipe, architecture, out_dir, settings.train_text_encoder)
    return ImageLoraResult(out_dir, step, sum(losses) / len(losses) if losses else math.nan, resumed, True)


def _stack(parts: list[Any]) -> Any:
    """Captions encoded one by one, as a batch: where their lengths differ (Qwen-Image's, which its pipeline pads
    with zeros under a zero mask), padded with zeros to the longest; lists (Z-Image's) joined."""
    if isinstance(parts[0], list):
        return [item for part in parts for item in part]
    longest = max(part.shape[1] for part in parts) if parts[0].dim() >= 2 else 0
    if all(part.dim() < 2 or part.shape[1] == longest for part in parts):
        return torch.cat(parts)
    padded = []
    for part in parts:
        extra = longest - part.shape[1]
        pad = part.new_zeros((part.shape[0], extra, *part.shape[2:]))
        padded.append(torch.cat([part, pad], dim=1))
    return torch.cat(padded)


def _all_encoders(pipe: Any) -> list[str]:
    return [name for name in ("text_encoder", "text_encoder_2", "text_encoder_3") if getattr(pipe, name, None)]


def _patch(architecture: _Architecture, denoiser: Any) -> int:
    """How many latent pixels a side of the training size must be a multiple of."""
    if not architecture.flow:
        return int(2 ** (len(denoiser.config.block_out_channels) - 1))
    config = denoiser.config
    patch = int(getattr(config, "patch_size", None) or (getattr(config, "all_patch_size", None) or (1,))[0])
    return patch * 2 if architecture.flow in _PACKED else patch


def _training_scheduler(architecture: _Architecture, pipe: Any) -> Any:
    import diffusers

    lib: Any = diffusers  # untyped
    if architecture.flow:  # the model's shift (SD3's 3.0), or none where it shifts by resolution (FLUX)
        return lib.FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    return lib.DDPMScheduler.from_config(pipe.scheduler.config)


def _latents(
    pipe: Any, images: list[Any], sizes: list[tuple[int, int]], device: str, shifted: bool = True
) -> list[torch.Tensor]:
    import numpy as np

    vae = pipe.vae
    out = []
    with torch.no_grad():
        for image, (width, height) in zip(images, sizes, strict=True):
            pixels = np.asarray(_fit(image, width, height), dtype=np.float32) / 127.5 - 1.0
            tensor = torch.from_numpy(pixels).permute(2, 0, 1)[None].to(device, vae.dtype)
            normalised = getattr(vae.config, "latents_mean", None)  # Qwen-Image's video VAE: one frame, per channel
            if normalised is not None:
                mean = vae.encode(tensor[:, :, None]).latent_dist.mean[:, :, 0]
                shape = (1, -1, 1, 1)
                centre = torch.tensor(vae.config.latents_mean, device=device).view(shape)
                spread = torch.tensor(vae.config.latents_std, device=device).view(shape)
                out.append(((mean.float() - centre) / spread).float())
                continue
            encoded = vae.encode(tensor)
            dist = getattr(encoded, "latent_dist", None)  # a KL VAE's posterior; Sana's DC-AE gives the latent
            mean = dist.mean if dist is not None else encoded.latent
            shift = (getattr(vae.config, "shift_factor", None) or 0.0) if shifted else 0.0
            out.append(((mean - shift) * vae.config.scaling_factor).float())
    return out


def _condition(pipe: Any, architecture: _Architecture, captions: list[str], device: str) -> dict[str, Any]:
    """What the denoiser reads of the captions, by name: ``context`` (the text embeddings) and, as the family has
    them, ``pooled`` (SDXL's, Kolors', SD3's and FLUX's pooled embedding) and ``mask`` (Sana's attention mask)."""
    if architecture.flow == "flux":
        context, pooled, _ = pipe.encode_prompt(captions, None, device=device, num_images_per_prompt=1)
        return {"context": context.float(), "pooled": pooled.float()}
    if architecture.flow == "cogview4":
        context, _ = pipe.encode_prompt(captions, do_classifier_free_guidance=False, device=device)
        return {"context": context.float()}
    if architecture.flow == "z-image":  # a list of each caption's own length
        embeds, _ = pipe.encode_prompt(captions, device=device, do_classifier_free_guidance=False)
        return {"context": [embed.float() for embed in embeds]}
    if architecture.flow == "qwen-image":
        context, mask = pipe.encode_prompt(captions, device=device, num_images_per_prompt=1)
        if mask is None:  # the pipeline drops a mask of all ones
            mask = torch.ones(context.shape[:2], dtype=torch.long, device=context.device)
        return {"context": context.float(), "mask": mask}
    if architecture.flow == "sana":
        context, mask, _, _ = pipe.encode_prompt(
            captions, do_classifier_free_guidance=False, device=device, num_images_per_prompt=1
        )
        return {"context": context.float(), "mask": mask}
    if architecture.flow == "sd3":
        encoded = pipe.encode_prompt(
            captions, None, None, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
    else:
        encoded = pipe.encode_prompt(
            captions, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
    out = {"context": encoded[0].float()}
    if architecture.added_conditions or architecture.flow == "sd3":
        out["pooled"] = encoded[2].float()
    return out


def _loss(
    unet: Any, scheduler: Any, clean: torch.Tensor, condition: dict[str, torch.Tensor], generator: torch.Generator
) -> Any:
    """DDPM's: a uniform timestep, the latents noised by the scheduler, the error against the noise (or the
    velocity, for a v-prediction model)."""
    noise = torch.randn(clean.shape, generator=generator).to(clean.device)
    steps = scheduler.config.num_train_timesteps
    timesteps = torch.randint(0, steps, (clean.shape[0],), generator=generator).to(clean.device)
    noisy = scheduler.add_noise(clean, noise, timesteps)
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(clean, noise, timesteps)
    else:
        target = noise
    dtype = unet.dtype
    extra = {}
    if "time_ids" in condition:
        added = {"text_embeds": condition["pooled"], "time_ids": condition["time_ids"]}
        extra["added_cond_kwargs"] = {k: v.to(dtype) for k, v in added.items()}
    context = condition["context"].to(dtype)
    prediction = unet(noisy.to(dtype), timesteps, encoder_hidden_states=context, **extra).sample
    return torch.nn.functional.mse_loss(prediction.float(), target.float())


def _flow_loss(
    architecture: _Architecture,
    pipe: Any,
    scheduler: Any,
    clean: torch.Tensor,
    condition: dict[str, torch.Tensor],
    generator: torch.Generator,
    guidance: float,
) -> Any:
    """Rectified flow's, as SD3's and FLUX's DreamBooth scripts: σ at a logit-normal draw among the scheduler's
    (shifted) training sigmas, the latents noised as (1 − σ)·x + σ·ε, the error of the predicted velocity against
    ε − x (weights 1)."""
    batch = clean.shape[0]
    noise = torch.randn(clean.shape, generator=generator).to(clean.device)
    draw = torch.sigmoid(torch.randn((batch,), generator=generator))  # logit-normal, mean 0, std 1
    count = len(scheduler.sigmas)
    indices = (draw * count).long().clamp(max=count - 1)
    sigmas = scheduler.sigmas[indices].to(clean.device, torch.float32)
    timesteps = sigmas * scheduler.config.num_train_timesteps
    noisy = (1.0 - sigmas.view(-1, 1, 1, 1)) * clean + sigmas.view(-1, 1, 1, 1) * noise
    target = noise - clean
    model = pipe.transformer
    dtype = model.dtype
    if architecture.flow == "z-image":
        return torch.nn.functional.mse_loss(_z_image_forward(pipe, noisy.to(dtype), sigmas, condition), target)
    context = condition["context"].to(dtype)
    if architecture.flow == "sd3":
        prediction = model(
            hidden_states=noisy.to(dtype),
            timestep=timesteps,
            encoder_hidden_states=context,
            pooled_projections=condition["pooled"].to(dtype),
            return_dict=False,
        )[0]
    elif architecture.flow == "flux":
        prediction = _flux_forward(pipe, noisy.to(dtype), timesteps, context, condition["pooled"].to(dtype), guidance)
    elif architecture.flow == "cogview4":
        sizes = condition["sizes"].to(dtype)
        prediction = model(
            hidden_states=noisy.to(dtype),
            encoder_hidden_states=context,
            timestep=timesteps,
            original_size=sizes,
            target_size=sizes,
            crop_coords=torch.zeros_like(sizes),
            return_dict=False,
        )[0]
    elif architecture.flow == "qwen-image":
        prediction = _qwen_image_forward(pipe, noisy.to(dtype), timesteps, context, condition["mask"])
    else:  # sana
        scale = float(getattr(model.config, "timestep_scale", 1.0) or 1.0)
        prediction = model(
            hidden_states=noisy.to(dtype),
            encoder_hidden_states=context,
            encoder_attention_mask=condition["mask"],
            timestep=timesteps * scale,
            return_dict=False,
        )[0]
    return torch.nn.functional.mse_loss(prediction.float(), target.float())


def _flux_forward(
    pipe: Any, noisy: torch.Tensor, timesteps: torch.Tensor, context: Any, pooled: Any, guidance: float
) -> Any:
    """FLUX reads 2x2 patches of the latents packed into a sequence, with their positions (and the text's, zeros),
    the timestep over 1000 and, for a guidance-distilled model (FLUX.1-dev), the guidance scale."""
    batch, channels, height, width = noisy.shape
    cls = type(pipe)
    packed = cls._pack_latents(noisy, batch, channels, height, width)
    image_ids = cls._prepare_latent_image_ids(batch, height // 2, width // 2, noisy.device, noisy.dtype)
    text_ids = torch.zeros(context.shape[1], 3, device=noisy.device, dtype=noisy.dtype)
    model = pipe.transformer
    distilled = bool(getattr(model.config, "guidance_embeds", False))
    scale = torch.full((batch,), guidance, device=noisy.device) if distilled else None
    prediction = model(
        hidden_states=packed,
        timestep=timesteps / 1000,
        guidance=scale,
        pooled_projections=pooled,
        encoder_hidden_states=context,
        txt_ids=text_ids,
        img_ids=image_ids,
        return_dict=False,
    )[0]
    factor = pipe.vae_scale_factor
    return cls._unpack_latents(prediction, height * factor, width * factor, factor)


def _z_image_forward(pipe: Any, noisy: torch.Tensor, sigmas: torch.Tensor, condition: dict[str, Any]) -> Any:
    """Z-Image reads lists (a one-frame latent and the caption's own embedding per picture), the time as 1 − σ, and
    predicts x − ε: its pipeline negates the output, so does this."""
    model = pipe.transformer
    latents = list(noisy.unsqueeze(2).unbind(dim=0))
    context = [embed.to(model.dtype) for embed in condition["context"]]
    out = model(latents, (1.0 - sigmas).to(model.dtype), context, return_dict=False)[0]
    return -torch.stack([item.float() for item in out]).squeeze(2)


def _qwen_image_forward(pipe: Any, noisy: torch.Tensor, timesteps: torch.Tensor, context: Any, mask: Any) -> Any:
    """Qwen-Image packs as FLUX does, gives the transformer the packed grid's shape (one frame) instead of ids, and
    reads the text through its mask (captions of a batch padded with zeros, as its pipeline pads them)."""
    batch, channels, height, width = noisy.shape
    cls = type(pipe)
    packed = cls._pack_latents(noisy, batch, channels, height, width)
    model = pipe.transformer
    distilled = bool(getattr(model.config, "guidance_embeds", False))
    prediction = model(
        hidden_states=packed,
        timestep=timesteps / 1000,
        guidance=torch.ones(batch, device=noisy.device) if distilled else None,
        encoder_hidden_states_mask=None if bool(mask.all()) else mask,  # as the pipeline passes it
        encoder_hidden_states=context,
        img_shapes=[[(1, height // 2, width // 2)]] * batch,
        return_dict=False,
    )[0]
    factor = pipe.vae_scale_factor
    return cls._unpack_latents(prediction, height * factor, width * factor, factor)[:, :, 0]


def _render_samples(pipe: Any, settings: ImageLoraSettings, guidance: float, folder: Path, step: int) -> list[str]:
    """Render each sample prompt with a fixed seed (the same at every checkpoint, so the images show the LoRA's
    progress) and write them as PNG files named by step."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with torch.no_grad():
        for number, prompt in enumerate(settings.sample_prompts):
            generator = torch.Generator().manual_seed(settings.seed + number)
            image = pipe(
                prompt,
                num_inference_steps=settings.sample_steps,
                guidance_scale=guidance,
                generator=generator,
            ).images[0]
            path = folder / f"step-{step:06d}-{number}.png"
            image.save(path)
            written.append(path.name)
    return written


def _save(pipe: Any, architecture: _Architecture, out_dir: str, with_text_encoders: bool) -> None:
    import diffusers
    from diffusers.utils import state_dict_utils
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    to_diffusers: Any = state_dict_utils.convert_state_dict_to_diffusers
    to_kohya: Any = state_dict_utils.convert_state_dict_to_kohya

    denoiser = architecture.denoiser
    layers = get_peft_model_state_dict(getattr(pipe, denoiser))
    trained = architecture.text_encoders if with_text_encoders else ()
    # Recent transformers flatten CLIPTextModel (no ``text_model.``); files keep the usual names, which every tool
    # (and diffusers, either way) reads.
    text_layers = {
        name: {(k if k.startswith("text_model.") else f"text_model.{k}"): v for k, v in found.items()}
        for name in trained
        for found in [get_peft_model_state_dict(getattr(pipe, name))]
    }

    def write(folder: Path) -> None:
        getattr(diffusers, architecture.pipeline).save_lora_weights(
            save_directory=str(folder),
            **{f"{denoiser}_lora_layers": to_diffusers(layers)},
            **{f"{name}_lora_layers": to_diffusers(found) for name, found in text_layers.items()},
            safe_serialization=True,
        )
        if not architecture.kohya:
            return
        peft = {f"unet.{k}": v for k, v in layers.items()}
        for name, found in text_layers.items():
            peft.update({f"{name}.{k}": v for k, v in found.items()})
        one_encoder = len(architecture.text_encoders) == 1  # kohya names SD 1.x/2.x's lora_te_, SDXL's te1/te2
        kohya = {
            (k.replace("lora_te1_", "lora_te_") if one_encoder else k): v.detach().to(torch.float16).contiguous()
            for k, v in to_kohya(peft).items()
        }
        metadata = {"ss_network_module": "networks.lora", "ss_network_dim": str(_rank(layers))}
        save_file(kohya, str(folder / f"{Path(out_dir).name}.safetensors"), metadata=metadata)

    write_whole(out_dir, write)


def _rank(layers: dict[str, torch.Tensor]) -> int:
    return next(int(v.shape[0]) for k, v in layers.items() if "lora_A" in k)


def settings_of(spec: TrainingSpec) -> ImageLoraSettings:
    """The settings a training job's spec asks for (its ``extra`` holds the image options)."""
    extra = spec.extra
    prompts = extra.get("sample_prompts") or ()
    return ImageLoraSettings(
        epochs=spec.epochs,
        learning_rate=spec.learning_rate,
        batch_size=spec.batch_size,
        rank=spec.lora_rank,
        resolution=extra.get("resolution"),
        crop=str(extra.get("crop") or "center"),
        trigger_word=extra.get("trigger_word"),
        train_text_encoder=bool(extra.get("train_text_encoder", False)),
        sample_prompts=tuple(str(p) for p in prompts),
        sample_steps=int(extra.get("sample_steps") or SAMPLE_STEPS),
        checkpoint_every=int(extra.get("checkpoint_every") or CHECKPOINT_EVERY),
        seed=spec.seed,
    )


class DiffusersLoraTrainer(Trainer):
    """The ``Trainer`` port for image LoRAs."""

    def train(
        self,
        spec: TrainingSpec,
        base_path: str,
        records: list[Any],
        out_dir: str,
        work_dir: str,
        report: Callable[[int, int, float, float | None], None],
        cancelled: Callable[[], bool],
        validation: list[Any] | None = None,
        samples: Samples | None = None,
    ) -> TrainOutcome:
        if spec.kind is not TrainingKind.IMAGE_LORA:
            raise InvalidParameters(f"This trainer trains image LoRAs, not {spec.kind.value}.", field="kind")
        result = train_image_lora(base_path, records, out_dir, work_dir, settings_of(spec), report, cancelled, samples)
        return TrainOutcome(result.steps, result.loss, result.resumed_from, result.finished)
