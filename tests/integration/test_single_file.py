"""Single-file checkpoints: the demo model written in the original LDM/A1111 layout, registered, converted
once into a diffusers folder, and generating what the demo model generates (real diffusers, offline)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from diffusers import UNet2DConditionModel
from PIL import Image
from safetensors.torch import load_file, save_file

from app.adapters.diffusers.demo import build_demo_model
from app.domain.errors import InvalidParameters
from app.domain.jobs import JobStatus
from app.entrypoints.cli.main import cli
from app.entrypoints.library import Atelier

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3"}
_RESNET |= {"time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
_UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2"}
_UNET_TOP |= {"conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
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
