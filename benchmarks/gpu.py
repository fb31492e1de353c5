"""Image generation on a GPU: full-size SD 1.5, SDXL and FLUX.1 denoisers, random-init from their published
configs (nothing downloaded), raw diffusers against Atelier's generator, in fp16 and bf16 at 512² and 1024².

Per case: iterations per second of the denoiser loop and peak GPU memory, for the raw pipeline call and for
Atelier's generator serving the same pipeline (its per-request view, scheduler, seeded generators, progress
callbacks and output conversion), and Atelier's batching gain (4 requests in one call against one by one).
Text encoders are full-size for SD 1.5 and SDXL; FLUX's T5 keeps T5-XXL's width with 2 of its 24 layers
(text encoding is a one-off per image; the transformer is what is measured). Loading from disk is not
measured here (``benchmarks.families`` measures the model cache).

    python -m benchmarks.gpu [--models sd15,sdxl,flux] [--steps 10] [--dtypes float16,bfloat16]

Needs CUDA; ``--tiny`` runs the same code path on tiny configs (any device) to check it.
About 5-8 minutes on one H100.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from benchmarks._common import emit

SIZES = {"sd15": (512, 1024), "sdxl": (1024,), "flux": (512, 1024)}
BATCH = 4


def _clip(hidden: int, layers: int, heads: int, inner: int, projection: int | None, act: str) -> Any:
    import transformers

    config = transformers.CLIPTextConfig(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=inner,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=77,
        hidden_act=act,
        projection_dim=projection or hidden,
    )
    if projection:
        return transformers.CLIPTextModelWithProjection(config)
    return transformers.CLIPTextModel(config)


def _vae(latent_channels: int, tiny: bool, **flux: Any) -> Any:
    import diffusers

    blocks = (32, 32) if tiny else (128, 256, 512, 512)
    return diffusers.AutoencoderKL(
        **flux,
        down_block_types=("DownEncoderBlock2D",) * len(blocks),
        up_block_types=("UpDecoderBlock2D",) * len(blocks),
        block_out_channels=blocks,
        layers_per_block=1 if tiny else 2,
        latent_channels=latent_channels,
        norm_num_groups=32,
    )


def build(model: str, tiny: bool) -> Any:
    """A random-init pipeline with the published architecture (``tiny``: the same classes, a few channels)."""
    import diffusers
    import transformers

    from app.adapters.diffusers.tiny.tokenizers import clip_tokenizer, t5_tokenizer

    clip = clip_tokenizer()
    if model == "sd15":
        unet = diffusers.UNet2DConditionModel(
            block_out_channels=(32, 64) if tiny else (320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D")
            if tiny
            else ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")
            if tiny
            else ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=32 if tiny else 768,
            attention_head_dim=8,
            layers_per_block=1 if tiny else 2,
            sample_size=64,
        )
        encoder = _clip(32, 2, 4, 37, None, "quick_gelu") if tiny else _clip(768, 12, 12, 3072, None, "quick_gelu")
        return diffusers.StableDiffusionPipeline(
            vae=_vae(4, tiny),
            text_encoder=encoder,
            tokenizer=clip,
            unet=unet,
            scheduler=diffusers.EulerDiscreteScheduler(),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    if model == "sdxl":
        unet = diffusers.UNet2DConditionModel(
            block_out_channels=(32, 64) if tiny else (320, 640, 1280),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D")
            if tiny
            else ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D")
            if tiny
            else ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 1) if tiny else (1, 2, 10),
            attention_head_dim=(2, 4) if tiny else (5, 10, 20),
            cross_attention_dim=64 if tiny else 2048,
            addition_embed_type="text_time",
            addition_time_embed_dim=8 if tiny else 256,
            projection_class_embeddings_input_dim=80 if tiny else 2816,
            use_linear_projection=True,
            layers_per_block=1 if tiny else 2,
            sample_size=128,
        )
        first = _clip(32, 2, 4, 37, None, "gelu") if tiny else _clip(768, 12, 12, 3072, None, "quick_gelu")
        second = _clip(32, 2, 4, 37, 32, "gelu") if tiny else _clip(1280, 32, 20, 5120, 1280, "gelu")
        return diffusers.StableDiffusionXLPipeline(
            vae=_vae(4, tiny),
            text_encoder=first,
            text_encoder_2=second,
            tokenizer=clip,
            tokenizer_2=clip,
            unet=unet,
            scheduler=diffusers.EulerDiscreteScheduler(),
        )
    t5 = t5_tokenizer(max_length=512)
    transformer = diffusers.FluxTransformer2DModel(
        patch_size=1,
        in_channels=64 if not tiny else 16,
        num_layers=1 if tiny else 19,
        num_single_layers=1 if tiny else 38,
        attention_head_dim=16 if tiny else 128,
        num_attention_heads=2 if tiny else 24,
        joint_attention_dim=32 if tiny else 4096,
        pooled_projection_dim=32 if tiny else 768,
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6) if tiny else (16, 56, 56),
    )
    encoder_config = transformers.T5Config(
        vocab_size=32128,
        d_model=32 if tiny else 4096,
        d_ff=37 if tiny else 10240,
        d_kv=8 if tiny else 64,
        num_layers=2,
        num_heads=4 if tiny else 64,
        feed_forward_proj="gated-gelu",
    )
    return diffusers.FluxPipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(
            shift=3.0, use_dynamic_shifting=True, base_image_seq_len=256, max_image_seq_len=4096
        ),
        vae=_vae(
            4 if tiny else 16,
            tiny,
            scaling_factor=0.3611,
            shift_factor=0.1159,
            use_quant_conv=False,
            use_post_quant_conv=False,
        ),
        text_encoder=_clip(32, 2, 4, 37, None, "quick_gelu") if tiny else _clip(768, 12, 12, 3072, None, "quick_gelu"),
        tokenizer=clip,
        text_encoder_2=transformers.T5EncoderModel(encoder_config),
        tokenizer_2=t5,
        transformer=transformer,
    )


class _Sink:
    def step(self, done: int, total: int) -> None:
        pass


def _timed(run: Any, cuda: bool) -> tuple[float, float]:
    """Seconds and peak GPU memory (GiB) of one call."""
    import torch

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run()
    if cuda:
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    return time.perf_counter() - start, peak


def measure(pipe: Any, generator: Any, info: Any, size: int, steps: int, device: str) -> dict[str, Any]:
    """Raw pipeline call against Atelier's generator on the same pipeline, and Atelier's batching gain."""
    import torch

    from app.domain.generation import GenerationParams
    from app.ports.generation import GenerationRequest

    cuda = device.startswith("cuda")

    def request(seed: int) -> Any:
        params = GenerationParams(prompt="a photo of a cat", model=info.name, width=size, height=size, steps=steps)
        return GenerationRequest(info, _seeded(params, seed))

    def raw() -> None:
        seeded = torch.Generator(device).manual_seed(1)
        pipe("a photo of a cat", width=size, height=size, num_inference_steps=steps, generator=seeded, output_type="np")

    def served() -> None:
        generator.generate(request(1), _Sink())

    def batched() -> None:
        requests = [request(k) for k in range(BATCH)]
        for outcome in generator.generate_batch(requests, [_Sink() for _ in requests]):
            if isinstance(outcome, Exception):
                raise outcome

    def one_by_one() -> None:
        for k in range(BATCH):
            generator.generate(request(k), _Sink())

    raw(), served()  # warm-up: kernels, allocator
    raw_s, raw_peak = _timed(raw, cuda)
    served_s, served_peak = _timed(served, cuda)
    serial_s, _ = _timed(one_by_one, cuda)
    batch_s, batch_peak = _timed(batched, cuda)
    return {
        "raw_it_s": round(steps / raw_s, 3),
        "atelier_it_s": round(steps / served_s, 3),
        "overhead_ratio": round(served_s / raw_s, 3),
        "raw_peak_gib": round(raw_peak, 2),
        "atelier_peak_gib": round(served_peak, 2),
        "batch_peak_gib": round(batch_peak, 2),
        "batching_ratio": round(serial_s / batch_s, 3),
    }


def _seeded(params: Any, seed: int) -> Any:
    from dataclasses import replace

    return replace(params, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="sd15,sdxl,flux")
    parser.add_argument("--dtypes", default="float16,bfloat16")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--tiny", action="store_true", help="tiny configs on any device: checks the code path")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("benchmarks.gpu needs a CUDA GPU (or --tiny --device cpu to check the code path).")
    from app.adapters.diffusers.generator import DiffusersImageGenerator, quiet_libraries
    from app.adapters.diffusers.runtime import RuntimeOptions
    from app.domain.families import Family
    from app.domain.models import ModelInfo

    quiet_libraries()
    cuda = args.device.startswith("cuda")
    families = {"sd15": Family.SD, "sdxl": Family.SDXL, "flux": Family.FLUX}
    rows: list[dict[str, Any]] = []

    for model in args.models.split(","):
        for dtype_name in args.dtypes.split(","):
            dtype = getattr(torch, dtype_name)
            with torch.device(args.device):
                pipe = build(model, args.tiny).to(dtype)
            pipe.set_progress_bar_config(disable=True)
            options = RuntimeOptions(device=args.device, dtype=dtype_name)
            generator = DiffusersImageGenerator(options=options, safety_checker=False, cache_bytes=2**40)
            generator.adopt(model, pipe, families[model])
            info = ModelInfo(name=model, path=model, source=model, family=families[model])
            for size in (64,) if args.tiny else SIZES[model]:
                row = measure(pipe, generator, info, size, args.steps, args.device)
                rows.append({"model": model, "dtype": dtype_name, "size": size, **row})
                print(rows[-1], flush=True)
            generator.unload_all()
            del pipe
            if cuda:
                torch.cuda.empty_cache()

    device = torch.cuda.get_device_name() if cuda else args.device
    emit(
        {"benchmark": "gpu", "device": device, "steps": args.steps, "batch": BATCH, "rows": rows},
        {
            "device": device,
            "rows": [
                {k: r[k] for k in ("model", "dtype", "size", "raw_it_s", "atelier_it_s", "batching_ratio")}
                for r in rows
            ],
        },
    )


if __name__ == "__main__":
    main()
