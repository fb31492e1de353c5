"""Single-file checkpoints: the demo model written in the original LDM/A1111 layout, registered, converted
once into a diffusers folder, and generating what the demo model generates (real diffusers, offline)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel

from app.adapters.diffusers.demo import build_demo_model
from app.adapters.diffusers.single_file import checkpoint_family, convert_single_file
from app.adapters.diffusers.tiny import build_tiny
from app.adapters.diffusers.tiny.tokenizers import clip_tokenizer
from app.domain.errors import InvalidParameters
from app.domain.families import Family
from app.domain.jobs import JobStatus
from app.entrypoints.cli.main import cli
from app.entrypoints.library import Atelier

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3"}
_RESNET |= {"time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
_UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2"}
_UNET_TOP |= {"conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
_UNET_TOP |= {"add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}  # SDXL's
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _rename(rest: str, table: dict[str, str]) -> str:
    for new, old in table.items():
        if rest.startswith(new + "."):
            return old + rest[len(new) :]
    return rest


def unet_to_ldm(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """diffusers UNet keys -> ``model.diffusion_model.*``: the inverse of ``convert_ldm_unet_checkpoint``."""
    per = config["layers_per_block"] + 1  # LDM numbers resnets, attentions and samplers as one flat list
    attention_ups = {i for i, kind in enumerate(config["up_block_types"]) if "CrossAttn" in kind}
    out = {}
    for key, value in state.items():
        p = key.split(".")
        if p[0] in ("down_blocks", "up_blocks") and p[2] in ("downsamplers", "upsamplers"):
            block, tail = int(p[1]), ".".join(p[5:])
            if p[0] == "down_blocks":
                new = f"input_blocks.{(block + 1) * per}.0.op.{tail}"
            else:
                new = f"output_blocks.{block * per + per - 1}.{2 if block in attention_ups else 1}.conv.{tail}"
        elif p[0] in ("down_blocks", "up_blocks"):
            index = 1 + int(p[1]) * per + int(p[3]) if p[0] == "down_blocks" else int(p[1]) * per + int(p[3])
            where = "input_blocks" if p[0] == "down_blocks" else "output_blocks"
            rest = ".".join(p[4:])
            new = f"{where}.{index}.0.{_rename(rest, _RESNET)}" if p[2] == "resnets" else f"{where}.{index}.1.{rest}"
        elif p[0] == "mid_block":
            rest = ".".join(p[3:])
            new = (
                f"middle_block.{2 * int(p[2])}.{_rename(rest, _RESNET)}"
                if p[1] == "resnets"
                else f"middle_block.1.{rest}"
            )
        else:
            new = _rename(key, _UNET_TOP)
        out[f"model.diffusion_model.{new}"] = value
    return out


def vae_to_ldm(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """diffusers VAE keys -> ``first_stage_model.*`` (LDM numbers decoder blocks bottom-up, attention as 1x1 convs)."""
    blocks = len(config["up_block_types"])
    out = {}
    for key, value in state.items():
        side, p = key.split(".")[0], key.split(".")[1:]
        new = key.replace("conv_norm_out", "norm_out")
        if p[0] in ("down_blocks", "up_blocks"):
            block = int(p[1]) if p[0] == "down_blocks" else blocks - 1 - int(p[1])
            where = "down" if p[0] == "down_blocks" else "up"
            sampler = "downsample" if where == "down" else "upsample"
            rest = f"{sampler}.conv.{p[-1]}" if p[2] in ("downsamplers", "upsamplers") else f"block.{'.'.join(p[3:])}"
            new = f"{side}.{where}.{block}.{rest}"
        elif p[0] == "mid_block" and p[1] == "resnets":
            new = f"{side}.mid.block_{int(p[2]) + 1}.{'.'.join(p[3:])}"
        elif p[0] == "mid_block":
            new = f"{side}.mid.attn_1.{_rename('.'.join(p[3:]), _VAE_ATTN)}"
            value = value[:, :, None, None] if value.ndim == 2 else value
        out["first_stage_model." + new.replace("conv_shortcut", "nin_shortcut")] = value
    return out


def ldm_state(model_dir: str, unet: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """A diffusers folder's UNet, VAE and CLIP text tower in the original single-file layout."""
    root = Path(model_dir)
    config = {name: json.loads((root / name / "config.json").read_text()) for name in ("unet", "vae")}
    state = unet_to_ldm(unet or load_file(root / "unet" / "diffusion_pytorch_model.safetensors"), config["unet"])
    state |= vae_to_ldm(load_file(root / "vae" / "diffusion_pytorch_model.safetensors"), config["vae"])
    text = load_file(root / "text_encoder" / "model.safetensors")
    state |= {f"cond_stage_model.transformer.text_model.{k.removeprefix('text_model.')}": v for k, v in text.items()}
    return {k: v.contiguous() for k, v in state.items()}


@pytest.fixture(scope="module")
def other_demo(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo architecture with other random weights: configs to convert with, weights that must not be used."""
    return build_demo_model(str(tmp_path_factory.mktemp("other") / "other"), seed=1)


@pytest.fixture
def checkpoint(tmp_path: Path, demo_model: str) -> str:
    path = tmp_path / "single.safetensors"
    save_file(ldm_state(demo_model), path)
    return str(path)


def _pixels(atelier: Atelier, model: str) -> np.ndarray:
    job = atelier.generate("一只猫在草地上", model=model, seed=5, steps=2)
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    return np.asarray(Image.open(atelier.image_path(job.images[0].id)), dtype=np.int16)


def test_a_converted_checkpoint_generates_what_its_source_model_generates(
    tmp_path: Path, demo_model: str, other_demo: str, checkpoint: str
) -> None:
    with Atelier.open(data_dir=str(tmp_path / "data")) as atelier:
        atelier.add_model("demo", demo_model)
        atelier.add_model("other", other_demo)
        info = atelier.add_model("single", checkpoint, config="other")  # other's configs, the file's weights
        assert Path(info.path) == (tmp_path / "data" / "models" / "converted" / "single").resolve()
        assert (Path(info.path) / "unet" / "diffusion_pytorch_model.safetensors").is_file()
        assert (info.source, info.default_size, info.tokenizer) == (checkpoint, 64, "bert")
        single, demo, other = (_pixels(atelier, name) for name in ("single", "demo", "other"))
    assert np.abs(single - demo).max() <= 1
    assert np.abs(single - other).mean() > 5  # the config folder's own weights would give other's image


def test_a_ckpt_converts_with_the_default_models_configs(tmp_path: Path, demo_model: str) -> None:
    path = tmp_path / "single.ckpt"
    torch.save({"state_dict": ldm_state(demo_model), "global_step": 3}, path)
    with Atelier.open(data_dir=str(tmp_path / "data"), start_worker=False) as atelier:
        atelier.add_model("demo", demo_model)
        info = atelier.add_model("from-ckpt", str(path))
    for part in ("unet/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "text_encoder/model"):
        ours, theirs = (load_file(Path(root) / f"{part}.safetensors") for root in (info.path, demo_model))
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), part


def test_a_checkpoint_of_another_architecture_is_refused_with_the_config_hint(tmp_path: Path, demo_model: str) -> None:
    torch.manual_seed(0)
    wider = UNet2DConditionModel(
        sample_size=32, layers_per_block=1, block_out_channels=(32, 96), cross_attention_dim=32, attention_head_dim=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    )  # fmt: skip
    path = tmp_path / "wider.safetensors"
    save_file(ldm_state(demo_model, unet=wider.state_dict()), path)
    with Atelier.open(data_dir=str(tmp_path / "data"), start_worker=False) as atelier:
        with pytest.raises(InvalidParameters, match=r"default model 'demo' is not registered.*--config"):
            atelier.add_model("wider", str(path))
        atelier.add_model("demo", demo_model)
        with pytest.raises(InvalidParameters, match=r"does not fit the architecture.*Pass --config") as error:
            atelier.add_model("wider", str(path), config=demo_model)
        assert error.value.code == "checkpoint_mismatch" and str(Path(demo_model).resolve()) in error.value.message
        assert [m.name for m in atelier.models()] == ["demo"]
    converted = tmp_path / "data" / "models" / "converted"
    assert not converted.exists() or list(converted.iterdir()) == []  # no half-built folder left behind


@pytest.mark.parametrize("content", [b"not a checkpoint at all", "safetensors without LDM keys"])
def test_a_file_that_is_no_checkpoint_is_refused(tmp_path: Path, demo_model: str, content: bytes | str) -> None:
    path = tmp_path / "junk.safetensors"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        save_file({"weight": torch.zeros(3)}, path)
    with Atelier.open(data_dir=str(tmp_path / "data"), start_worker=False) as atelier:
        atelier.add_model("demo", demo_model)
        with pytest.raises(InvalidParameters) as error:
            atelier.add_model("junk", str(path))
        assert error.value.code == "invalid_checkpoint" and str(path) in error.value.message
        assert [m.name for m in atelier.models()] == ["demo"]


def test_the_cli_converts_with_a_registered_models_configs(tmp_path: Path, demo_model: str, checkpoint: str) -> None:
    data = str(tmp_path / "data")
    with Atelier.open(data_dir=data, start_worker=False) as atelier:
        atelier.add_model("demo", demo_model)
    result = CliRunner().invoke(cli, ["--data-dir", data, "models", "add", "mine", checkpoint, "--config", "demo"])
    assert result.exit_code == 0, result.output
    folder = (tmp_path / "data" / "models" / "converted" / "mine").resolve()
    assert result.stdout.strip() == f"registered mine: {folder} (64px, bert tokenizer, converted from {checkpoint})"
    result = CliRunner().invoke(cli, ["--data-dir", data, "models", "add", "mine", checkpoint, "--config", "demo"])
    assert result.exit_code != 0 and "already registered" in result.stderr


# --- SDXL (base and refiner), SD3 and FLUX ---------------------------------------------------------------------

_OPEN_CLIP = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
_OPEN_CLIP |= {"self_attn.out_proj": "attn.out_proj"}


def openclip_to_sgm(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A transformers CLIP text tower in open_clip's layout (SDXL's OpenCLIP-G): one fused ``in_proj`` per layer,
    ``text_projection`` as a matrix applied from the right, ``logit_scale`` beside it: the inverse of diffusers'
    ``convert_open_clip_checkpoint``."""
    out: dict[str, Any] = {"logit_scale": torch.tensor(4.6052)}
    projections: dict[tuple[str, str], dict[str, Any]] = {}
    for key, value in state.items():
        k = key.removeprefix("text_model.")
        if k.startswith("encoder.layers."):
            _, _, layer, rest = k.split(".", 3)
            projection = rest.split(".")[1] if rest.startswith("self_attn.") else ""
            if projection in ("q_proj", "k_proj", "v_proj"):
                projections.setdefault((layer, rest.rsplit(".", 1)[1]), {})[projection] = value
            else:
                out[f"transformer.resblocks.{layer}.{_rename(rest, _OPEN_CLIP)}"] = value
        elif k == "text_projection.weight":
            out["text_projection"] = value.T.contiguous()
        else:
            out[{"embeddings.position_embedding.weight": "positional_embedding"}.get(k, k)] = value
    for (layer, kind), qkv in projections.items():
        fused = torch.cat([qkv["q_proj"], qkv["k_proj"], qkv["v_proj"]])
        out[f"transformer.resblocks.{layer}.attn.in_proj_{kind}"] = fused
    out = {
        k.replace("final_layer_norm.", "ln_final.").replace("embeddings.token_", "token_"): v for k, v in out.items()
    }
    return {prefix + k: v for k, v in out.items()}


def sgm_state(model_dir: str) -> dict[str, torch.Tensor]:
    """An SDXL folder in A1111/ComfyUI's single-file layout: the base with CLIP-L and OpenCLIP-G as embedders
    0 and 1, the refiner (no ``text_encoder``) with OpenCLIP-G alone as embedder 0."""
    root = Path(model_dir)
    config = {name: json.loads((root / name / "config.json").read_text()) for name in ("unet", "vae")}
    state = unet_to_ldm(load_file(root / "unet" / "diffusion_pytorch_model.safetensors"), config["unet"])
    state |= vae_to_ldm(load_file(root / "vae" / "diffusion_pytorch_model.safetensors"), config["vae"])
    big_g = load_file(root / "text_encoder_2" / "model.safetensors")
    if (root / "text_encoder").is_dir():
        clip_l = load_file(root / "text_encoder" / "model.safetensors")
        state |= {f"conditioner.embedders.0.transformer.text_model.{k.removeprefix('text_model.')}": v
                  for k, v in clip_l.items()}  # fmt: skip
        state |= openclip_to_sgm(big_g, "conditioner.embedders.1.model.")
    else:
        state |= openclip_to_sgm(big_g, "conditioner.embedders.0.model.")
    return {k: v.contiguous() for k, v in state.items()}


def _swap_halves(weight: torch.Tensor) -> torch.Tensor:
    first, second = weight.chunk(2, dim=0)
    return torch.cat([second, first])


def _renamed(state: dict[str, Any], table: list[tuple[str, str]], swapped: str) -> dict[str, Any]:
    """Keys renamed by the first matching pattern (unmatched keys are left out); targets matching ``swapped``
    get their halves exchanged (the original models' (shift, scale) order, diffusers' (scale, shift))."""
    out = {}
    for key, value in state.items():
        for pattern, replacement in table:
            if match := re.fullmatch(pattern, key):
                new = match.expand(replacement)
                out[new] = _swap_halves(value) if re.fullmatch(swapped, new) else value
                break
    return out


def _fused(state: dict[str, Any], groups: list[tuple[str, list[str]]]) -> dict[str, Any]:
    """Projections concatenated into one (``{i}``: the block, ``{p}``: weight or bias)."""
    out = {}
    for target, sources in groups:
        pattern = re.escape(sources[0]).replace(r"\{i\}", r"(\d+)").replace(r"\{p\}", r"(weight|bias)")
        for key in state:
            if match := re.fullmatch(pattern, key):
                i, p = match.groups()
                out[target.format(i=i, p=p)] = torch.cat([state[s.format(i=i, p=p)] for s in sources])
    return out


_FINAL = [
    (r"proj_out\.(.*)", r"final_layer.linear.\1"),
    (r"norm_out\.linear\.(.*)", r"final_layer.adaLN_modulation.1.\1"),
]
_BLOCK = r"transformer_blocks\.(\d+)\."


def sd3_to_sai(state: dict[str, Any], last: int) -> dict[str, torch.Tensor]:
    """An SD3 transformer in Stability's layout (``model.diffusion_model.joint_blocks.*``, fused qkv): the
    inverse of diffusers' ``convert_sd3_transformer_checkpoint_to_diffusers``."""
    table = [
        (r"pos_embed\.pos_embed", "pos_embed"),
        (r"pos_embed\.proj\.(.*)", r"x_embedder.proj.\1"),
        (r"context_embedder\.(.*)", r"context_embedder.\1"),
        (_BLOCK + r"attn\.to_out\.0\.(.*)", r"joint_blocks.\1.x_block.attn.proj.\2"),
        (_BLOCK + r"attn\.to_add_out\.(.*)", r"joint_blocks.\1.context_block.attn.proj.\2"),
        (_BLOCK + r"norm1\.linear\.(.*)", r"joint_blocks.\1.x_block.adaLN_modulation.1.\2"),
        (_BLOCK + r"norm1_context\.linear\.(.*)", r"joint_blocks.\1.context_block.adaLN_modulation.1.\2"),
        (_BLOCK + r"ff\.net\.0\.proj\.(.*)", r"joint_blocks.\1.x_block.mlp.fc1.\2"),
        (_BLOCK + r"ff\.net\.2\.(.*)", r"joint_blocks.\1.x_block.mlp.fc2.\2"),
        (_BLOCK + r"ff_context\.net\.0\.proj\.(.*)", r"joint_blocks.\1.context_block.mlp.fc1.\2"),
        (_BLOCK + r"ff_context\.net\.2\.(.*)", r"joint_blocks.\1.context_block.mlp.fc2.\2"),
    ]
    timestep = [(r"time_text_embed\.timestep_embedder\.linear_1\.(.*)", r"t_embedder.mlp.0.\1"),
                (r"time_text_embed\.timestep_embedder\.linear_2\.(.*)", r"t_embedder.mlp.2.\1"),
                (r"time_text_embed\.text_embedder\.linear_1\.(.*)", r"y_embedder.mlp.0.\1"),
                (r"time_text_embed\.text_embedder\.linear_2\.(.*)", r"y_embedder.mlp.2.\1")]  # fmt: skip
    swapped = rf"final_layer\.adaLN_modulation\.1\..*|joint_blocks\.{last}\.context_block\.adaLN_modulation\.1\..*"
    out = _renamed(state, [*timestep, *table, *_FINAL], swapped)
    out |= _fused(state, [
        ("joint_blocks.{i}.x_block.attn.qkv.{p}", [f"transformer_blocks.{{i}}.attn.to_{x}.{{p}}" for x in "qkv"]),
        ("joint_blocks.{i}.context_block.attn.qkv.{p}",
         [f"transformer_blocks.{{i}}.attn.add_{x}_proj.{{p}}" for x in "qkv"]),
    ])  # fmt: skip
    return {f"model.diffusion_model.{k}": v.contiguous() for k, v in out.items()}


def flux_to_bfl(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A FLUX transformer in Black Forest Labs' layout (bare ``double_blocks.*``/``single_blocks.*`` keys)."""
    double, single = r"transformer_blocks\.(\d+)\.", r"single_transformer_blocks\.(\d+)\."
    table = [
        (r"time_text_embed\.timestep_embedder\.linear_1\.(.*)", r"time_in.in_layer.\1"),
        (r"time_text_embed\.timestep_embedder\.linear_2\.(.*)", r"time_in.out_layer.\1"),
        (r"time_text_embed\.text_embedder\.linear_1\.(.*)", r"vector_in.in_layer.\1"),
        (r"time_text_embed\.text_embedder\.linear_2\.(.*)", r"vector_in.out_layer.\1"),
        (r"time_text_embed\.guidance_embedder\.linear_1\.(.*)", r"guidance_in.in_layer.\1"),
        (r"time_text_embed\.guidance_embedder\.linear_2\.(.*)", r"guidance_in.out_layer.\1"),
        (r"context_embedder\.(.*)", r"txt_in.\1"),
        (r"x_embedder\.(.*)", r"img_in.\1"),
        (single + r"norm\.linear\.(.*)", r"single_blocks.\1.modulation.lin.\2"),
        (single + r"attn\.norm_q\.weight", r"single_blocks.\1.norm.query_norm.scale"),
        (single + r"attn\.norm_k\.weight", r"single_blocks.\1.norm.key_norm.scale"),
        (single + r"proj_out\.(.*)", r"single_blocks.\1.linear2.\2"),
        (double + r"norm1\.linear\.(.*)", r"double_blocks.\1.img_mod.lin.\2"),
        (double + r"norm1_context\.linear\.(.*)", r"double_blocks.\1.txt_mod.lin.\2"),
        (double + r"attn\.norm_q\.weight", r"double_blocks.\1.img_attn.norm.query_norm.scale"),
        (double + r"attn\.norm_k\.weight", r"double_blocks.\1.img_attn.norm.key_norm.scale"),
        (double + r"attn\.norm_added_q\.weight", r"double_blocks.\1.txt_attn.norm.query_norm.scale"),
        (double + r"attn\.norm_added_k\.weight", r"double_blocks.\1.txt_attn.norm.key_norm.scale"),
        (double + r"ff\.net\.0\.proj\.(.*)", r"double_blocks.\1.img_mlp.0.\2"),
        (double + r"ff\.net\.2\.(.*)", r"double_blocks.\1.img_mlp.2.\2"),
        (double + r"ff_context\.net\.0\.proj\.(.*)", r"double_blocks.\1.txt_mlp.0.\2"),
        (double + r"ff_context\.net\.2\.(.*)", r"double_blocks.\1.txt_mlp.2.\2"),
        (double + r"attn\.to_out\.0\.(.*)", r"double_blocks.\1.img_attn.proj.\2"),
        (double + r"attn\.to_add_out\.(.*)", r"double_blocks.\1.txt_attn.proj.\2"),
        *_FINAL,
    ]
    out = _renamed(state, table, r"final_layer\.adaLN_modulation\.1\..*")
    out |= _fused(state, [
        ("double_blocks.{i}.img_attn.qkv.{p}", [f"transformer_blocks.{{i}}.attn.to_{x}.{{p}}" for x in "qkv"]),
        ("double_blocks.{i}.txt_attn.qkv.{p}", [f"transformer_blocks.{{i}}.attn.add_{x}_proj.{{p}}" for x in "qkv"]),
        ("single_blocks.{i}.linear1.{p}", [*(f"single_transformer_blocks.{{i}}.attn.to_{x}.{{p}}" for x in "qkv"),
                                           "single_transformer_blocks.{i}.proj_mlp.{p}"]),
    ])  # fmt: skip
    return {k: v.contiguous() for k, v in out.items()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, int], str]:
    """``tiny(family, seed)``: that family's tiny pipeline, built once per module."""
    root = tmp_path_factory.mktemp("tiny")

    def build(family: str, seed: int = 0) -> str:
        folder = root / f"{family}-{seed}"
        if not (folder / "model_index.json").is_file():
            build_tiny(family, str(folder), seed=seed)
        return str(folder)

    return build


def _same_weights(folder: str, source: str, parts: list[str]) -> None:
    for part in parts:
        name = "model" if part.startswith("text_encoder") else "diffusion_pytorch_model"
        ours, theirs = (load_file(Path(root) / part / f"{name}.safetensors") for root in (folder, source))
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), part


def test_an_sdxl_checkpoint_converts_with_an_sdxl_folders_configs_and_generates_its_images(
    tmp_path: Path, tiny: Callable[[str, int], str]
) -> None:
    path = tmp_path / "xl.safetensors"
    state = sgm_state(tiny("sdxl", 0))
    assert checkpoint_family(state) is Family.SDXL
    save_file(state, path)
    with Atelier.open(data_dir=str(tmp_path / "data")) as atelier:
        atelier.add_model("xl", tiny("sdxl", 0))
        atelier.add_model("xl-other", tiny("sdxl", 1))  # the configs to convert with; its weights must not be used
        info = atelier.add_model("xl-single", str(path), config="xl-other")
        assert (info.family, info.default_size) == (Family.SDXL, 64)
        _same_weights(info.path, tiny("sdxl", 0), ["unet", "vae", "text_encoder", "text_encoder_2"])
        single, xl, other = (_pixels(atelier, name) for name in ("xl-single", "xl", "xl-other"))
    assert np.array_equal(single, xl)
    assert np.abs(single - other).mean() > 5


def test_an_sdxl_refiner_checkpoint_converts_with_a_refiner_folders_configs(
    tmp_path: Path, tiny: Callable[[str, int], str]
) -> None:
    path = tmp_path / "refiner.safetensors"
    state = sgm_state(tiny("sdxl-refiner", 0))
    assert checkpoint_family(state) is Family.SDXL_REFINER
    save_file(state, path)
    with Atelier.open(data_dir=str(tmp_path / "data"), start_worker=False) as atelier:
        info = atelier.add_model("refiner", str(path), config=tiny("sdxl-refiner", 1))
    assert info.family is Family.SDXL_REFINER
    _same_weights(info.path, tiny("sdxl-refiner", 0), ["unet", "vae", "text_encoder_2"])
    assert not (Path(info.path) / "text_encoder").exists()


def test_an_sd3_checkpoint_converts_with_or_without_its_vae_and_text_encoders(
    tmp_path: Path, tiny: Callable[[str, int], str]
) -> None:
    source, configs = tiny("sd3", 0), tiny("sd3", 1)
    layers = json.loads((Path(source) / "transformer" / "config.json").read_text())["num_layers"]
    transformer = sd3_to_sai(
        load_file(Path(source) / "transformer" / "diffusion_pytorch_model.safetensors"), layers - 1
    )
    assert checkpoint_family(transformer) is Family.SD3
    save_file(transformer, tmp_path / "alone.safetensors")  # as Stability's transformer-only releases
    alone = convert_single_file(str(tmp_path / "alone.safetensors"), str(tmp_path / "alone"), configs)
    _same_weights(alone, source, ["transformer"])
    _same_weights(alone, configs, ["vae", "text_encoder", "text_encoder_2", "text_encoder_3"])
    vae = load_file(Path(source) / "vae" / "diffusion_pytorch_model.safetensors")
    whole = transformer | vae_to_ldm(vae, json.loads((Path(source) / "vae" / "config.json").read_text()))
    for i, tower in enumerate(("clip_l", "clip_g", "t5xxl")):
        text = load_file(Path(source) / f"text_encoder{f'_{i + 1}' if i else ''}" / "model.safetensors")
        whole |= {f"text_encoders.{tower}.transformer.{k}": v for k, v in text.items()}
    save_file(whole, tmp_path / "whole.safetensors")
    converted = convert_single_file(str(tmp_path / "whole.safetensors"), str(tmp_path / "whole"), configs)
    _same_weights(converted, source, ["transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3"])


def test_a_flux_checkpoint_is_recognised_and_one_of_another_width_refused_clearly(
    tmp_path: Path, tiny: Callable[[str, int], str]
) -> None:
    source = tiny("flux", 0)
    state = flux_to_bfl(load_file(Path(source) / "transformer" / "diffusion_pytorch_model.safetensors"))
    assert checkpoint_family(state) is Family.FLUX
    assert checkpoint_family({f"model.diffusion_model.{k}": v for k, v in state.items()}) is Family.FLUX
    save_file(state, tmp_path / "flux.safetensors")
    with pytest.raises(InvalidParameters, match=r"FLUX\.1 single files 3072 wide only; this transformer is 32 wide"):
        convert_single_file(str(tmp_path / "flux.safetensors"), str(tmp_path / "out"), source)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("checkpoint_of", "config_of", "labels"),
    [
        ("sdxl", "demo", ("a Stable Diffusion XL checkpoint", "a Stable Diffusion 1.x/2.x model folder")),
        ("demo", "sdxl", ("a Stable Diffusion 1.x/2.x checkpoint", "a Stable Diffusion XL model folder")),
        ("sdxl-refiner", "sdxl", ("a Stable Diffusion XL refiner checkpoint", "a Stable Diffusion XL model folder")),
        ("sdxl", "sdxl-refiner", ("a Stable Diffusion XL checkpoint", "a Stable Diffusion XL refiner model folder")),
        ("flux", "sd3", ("a FLUX.1 checkpoint", "a Stable Diffusion 3 model folder")),
    ],
)
def test_a_checkpoint_of_another_family_than_the_configs_is_refused_naming_both(
    tmp_path: Path,
    tiny: Callable[[str, int], str],
    demo_model: str,
    checkpoint_of: str,
    config_of: str,
    labels: tuple[str, str],
) -> None:
    folders = {"demo": demo_model}
    folder = folders.get(checkpoint_of) or tiny(checkpoint_of, 0)
    if checkpoint_of == "flux":
        state = flux_to_bfl(load_file(Path(folder) / "transformer" / "diffusion_pytorch_model.safetensors"))
    else:
        state = ldm_state(folder) if checkpoint_of == "demo" else sgm_state(folder)
    save_file(state, tmp_path / "file.safetensors")
    config = folders.get(config_of) or tiny(config_of, 0)
    with pytest.raises(InvalidParameters) as error:
        convert_single_file(str(tmp_path / "file.safetensors"), str(tmp_path / "out"), config)
    assert (error.value.code, error.value.field) == ("checkpoint_family_mismatch", "config")
    assert all(label in error.value.message for label in labels), error.value.message
    assert not (tmp_path / "out").exists()


def test_the_family_is_read_from_the_keys() -> None:
    t = torch.zeros(1)
    conv = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 8, 3, 3)}
    assert checkpoint_family({"model.diffusion_model.input_blocks.1.0.x": t, "cond_stage_model.transformer.y": t}) is (
        Family.SD
    )
    assert checkpoint_family({**conv, "cond_stage_model.model.x": t}) is Family.INSTRUCT_PIX2PIX
    assert checkpoint_family({"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": t}) is Family.SD3
    assert checkpoint_family({"double_blocks.0.img_attn.qkv.weight": t}) is Family.FLUX
    assert checkpoint_family({"conditioner.embedders.0.model.text_projection": t}) is Family.SDXL_REFINER
    assert checkpoint_family({"weight": t}) is None


def test_an_sd2_checkpoint_converts_its_openclip_text_encoder(tmp_path: Path, demo_model: str) -> None:
    """SD 2.x's OpenCLIP-H in open_clip's layout, with the last layer and the projection SD 2.x does not use."""
    tokenizer = clip_tokenizer(77)
    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    pipe = StableDiffusionPipeline.from_pretrained(demo_model, local_files_only=True)
    pipe.register_modules(text_encoder=CLIPTextModel(config).eval(), tokenizer=tokenizer)
    pipe.save_pretrained(tmp_path / "sd2")
    root = tmp_path / "sd2"
    configs = {name: json.loads((root / name / "config.json").read_text()) for name in ("unet", "vae")}
    state = unet_to_ldm(load_file(root / "unet" / "diffusion_pytorch_model.safetensors"), configs["unet"])
    state |= vae_to_ldm(load_file(root / "vae" / "diffusion_pytorch_model.safetensors"), configs["vae"])
    text = load_file(root / "text_encoder" / "model.safetensors")
    text |= {k.replace("layers.1.", "layers.2."): v.clone() for k, v in text.items() if ".layers.1." in k}  # skipped
    text["text_projection.weight"] = torch.eye(32)
    state |= openclip_to_sgm(text, "cond_stage_model.model.")
    assert checkpoint_family(state) is Family.SD
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "sd2.safetensors")
    converted = convert_single_file(str(tmp_path / "sd2.safetensors"), str(tmp_path / "out"), str(root))
    _same_weights(converted, str(root), ["unet", "vae", "text_encoder"])
