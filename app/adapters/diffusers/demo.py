"""A tiny random-init Chinese text-to-image model in diffusers format, for demos and tests."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import diffusers as _diffusers
import torch
import transformers as _transformers

from app.adapters.diffusers.generator import quiet_libraries
from app.adapters.storage.folders import building

# Both libraries are untyped for a strict mypy (lazy modules, decorated constructors).
diffusers: Any = _diffusers
transformers: Any = _transformers

VOCAB_FILE = Path(__file__).parent / "assets" / "bert-base-chinese-vocab.txt"
MAX_TOKENS = 32
MARKER_FILE = "atelier-demo.json"


def bert_chinese_tokenizer(max_tokens: int = MAX_TOKENS) -> Any:
    """A BERT tokenizer over the shipped bert-base-chinese vocabulary."""
    # BertTokenizerFast(vocab_file=...) silently builds a 5-token vocab in transformers 5; from_pretrained does not.
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(VOCAB_FILE, Path(tmp) / "vocab.txt")
        return transformers.BertTokenizer.from_pretrained(tmp, model_max_length=max_tokens)


def _text_encoder(tokenizer: Any, seed: int) -> Any:
    torch.manual_seed(seed)
    config = transformers.CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return transformers.CLIPTextModel(config).eval()


def _unet(seed: int) -> Any:
    torch.manual_seed(seed)
    return diffusers.UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    ).eval()


def _vae(seed: int) -> Any:
    # Two blocks: VAE scale factor 2, so 32x32 latents decode to the native 64x64 image.
    torch.manual_seed(seed)
    return diffusers.AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=32,
        sample_size=64,
    ).eval()


def _scheduler() -> Any:
    return diffusers.DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def build_demo_model(out_dir: str, seed: int = 0, replace: bool = False) -> str:
    """Write a tiny random-init pipeline (BERT Chinese tokenizer, CLIP text tower, 64x64 native) to ``out_dir``.

    The weights depend only on ``seed``. The folder appears complete or not at all: it is built in a
    temporary folder next to ``out_dir`` and renamed into place. Raises ``FileExistsError`` when
    ``out_dir`` exists and is not empty, unless ``replace`` is set.
    """
    quiet_libraries()
    target = Path(out_dir).resolve()
    if not replace and target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"{target} already exists and is not an empty folder.")
    with building(target) as tmp:
        tokenizer = bert_chinese_tokenizer()
        pipe = diffusers.StableDiffusionPipeline(
            vae=_vae(seed),
            text_encoder=_text_encoder(tokenizer, seed),
            tokenizer=tokenizer,
            unet=_unet(seed),
            scheduler=_scheduler(),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.save_pretrained(tmp)
        marker = {
            "kind": "random-init demo",
            "seed": seed,
            "note": "images are noise until real weights are registered",
        }
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return str(target)


def build_demo_controlnet(base_dir: str, out_dir: str, seed: int = 0, replace: bool = False) -> str:
    """A random-init ControlNet for the demo model (same UNet shape), in diffusers format.

    The conditioning embedding downsamples by the base model's VAE scale factor (a ControlNet must
    downsample by exactly that factor): 2 for the random-init model, 4 for the trained demo model.
    """
    quiet_libraries()
    target = Path(out_dir).resolve()
    if not replace and (target / "config.json").is_file():
        raise FileExistsError(f"{target} already holds a ControlNet.")
    unet = diffusers.UNet2DConditionModel.from_pretrained(base_dir, subfolder="unet", local_files_only=True)
    vae_config = json.loads((Path(base_dir) / "vae" / "config.json").read_text(encoding="utf-8"))
    downsamples = len(vae_config["block_out_channels"]) - 1
    torch.manual_seed(seed)
    controlnet = diffusers.ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=tuple(16 * 2**i for i in range(downsamples + 1))
    )
    # A trained ControlNet starts from zero convolutions and learns them; left at zero, a demo
    # ControlNet would add nothing at all. Random values make the control image visibly matter.
    with torch.no_grad():
        for block in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            torch.nn.init.normal_(block.weight, std=0.05)
    with building(target) as tmp:
        controlnet.save_pretrained(tmp)
    return str(target)


def build_demo_lora(base_dir: str, out_dir: str, seed: int = 0, rank: int = 4) -> str:
    """A random rank-``rank`` LoRA over the demo UNet's attention projections, saved in the
    diffusers/PEFT format (``pytorch_lora_weights.safetensors``), for demos, tests and benchmarks."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    quiet_libraries()
    unet = diffusers.UNet2DConditionModel.from_pretrained(base_dir, subfolder="unet", local_files_only=True)
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_k", "to_q", "to_v", "to_out.0"])
    unet.add_adapter(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_" in name:  # PEFT starts B at zero, which would make the LoRA do nothing
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    state = diffusers.utils.convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    diffusers.StableDiffusionPipeline.save_lora_weights(str(target), unet_lora_layers=state)
    return str(target)


class DiffusersDemoModels:
    """``DemoModels``: the shipped demo-world model and the random-init builders above."""

    def shipped(self) -> str:
        from app.adapters.demo_world import model_path

        return model_path()

    def build_pipeline(self, out_dir: str, seed: int) -> str:
        return build_demo_model(out_dir, seed=seed, replace=True)

    def build_controlnet(self, base_dir: str, out_dir: str, seed: int) -> str:
        return build_demo_controlnet(base_dir, out_dir, seed=seed, replace=True)

    def build_lora(self, base_dir: str, out_dir: str, seed: int) -> str:
        return build_demo_lora(base_dir, out_dir, seed=seed)
