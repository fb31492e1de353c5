"""LoRA loading and per-request activation on the tiny demo pipeline (real diffusers + PEFT, no downloads)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from diffusers.models.attention_processor import Attention
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file

from app.adapters.diffusers.demo import build_demo_model
from app.adapters.diffusers.generator import quiet_libraries
from app.adapters.diffusers.lora import LoraManager, load_lora_state
from app.domain.errors import InvalidParameters, ModelUnavailable

RANK = 4
pytestmark = pytest.mark.filterwarnings("ignore:Already found a `peft_config`", "ignore:Adapter .* is now deleted")
VISIBLE = 0.02  # mean absolute pixel change (0..1 scale) that counts as a visible LoRA effect; runs repeat exactly


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    torch.set_num_threads(1)
    quiet_libraries()


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_demo_model(str(tmp_path_factory.mktemp("models") / "demo"), seed=0)


def _load(demo_dir: str) -> Any:
    pipe = StableDiffusionPipeline.from_pretrained(demo_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def render(pipe: Any, **modules: Any) -> np.ndarray:
    """One 64x64 2-step image through a per-request view sharing ``pipe``'s modules, as the generator does."""
    components = {**pipe.components, **modules, "scheduler": DDIMScheduler.from_config(pipe.scheduler.config)}
    view = StableDiffusionPipeline(**components)
    view.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        out = view("一只猫在草地上", height=64, width=64, num_inference_steps=2, output_type="np",
                   generator=torch.Generator().manual_seed(0))  # fmt: skip
    return np.asarray(out.images[0])


def _differs(a: np.ndarray, b: np.ndarray) -> bool:
    return float(np.abs(a - b).mean()) > VISIBLE


def _pai_state(unet: Any, seed: int, extra_inputs: int = 0) -> dict[str, torch.Tensor]:
    """A 2023 attention-processor LoRA (PAI format) over every attention projection of ``unet``."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in unet.named_modules():
        if isinstance(module, Attention):
            for proj, linear in (("to_q", module.to_q), ("to_k", module.to_k), ("to_v", module.to_v),
                                 ("to_out", module.to_out[0])):  # fmt: skip
                down = torch.randn(RANK, linear.in_features + extra_inputs, generator=g) * 0.5
                state[f"{name}.processor.{proj}_lora.down.weight"] = down
                state[f"{name}.processor.{proj}_lora.up.weight"] = (
                    torch.randn(linear.out_features, RANK, generator=g) * 0.5
                )
    return state


def _save_pai(folder: Path, state: dict[str, torch.Tensor]) -> str:
    folder.mkdir(parents=True)
    torch.save(state, folder / "pytorch_lora_weights.bin")
    return str(folder)


@pytest.fixture(scope="session")
def files(demo_dir: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """LoRA files made from the demo model, with reference images computed without our loader."""
    root = tmp_path_factory.mktemp("loras")
    pipe = _load(demo_dir)
    g = torch.Generator().manual_seed(1)
    unet, text_encoder = copy.deepcopy(pipe.unet), copy.deepcopy(pipe.text_encoder)
    unet.add_adapter(LoraConfig(r=RANK, lora_alpha=RANK, init_lora_weights="gaussian",
                                target_modules=["to_k", "to_q", "to_v", "to_out.0"]))  # fmt: skip
    text_encoder.add_adapter(LoraConfig(r=RANK, lora_alpha=RANK, init_lora_weights="gaussian",
                                        target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]))  # fmt: skip
    with torch.no_grad():
        for model in (unet, text_encoder):
            for name, param in model.named_parameters():
                if "lora_B" in name:  # PEFT initialises B to zero: the LoRA would do nothing
                    param.copy_(torch.randn(param.shape, generator=g) * 0.5)
    StableDiffusionPipeline.save_lora_weights(
        str(root / "peft"),
        unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(unet)),
        text_encoder_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(text_encoder)),
    )
    pai = _pai_state(pipe.unet, seed=2)
    merged = copy.deepcopy(pipe.unet)  # the PAI LoRA merged by hand: W += up @ down
    with torch.no_grad():
        for name, module in merged.named_modules():
            if isinstance(module, Attention):
                for proj, linear in (("to_q", module.to_q), ("to_k", module.to_k), ("to_v", module.to_v),
                                     ("to_out", module.to_out[0])):  # fmt: skip
                    key = f"{name}.processor.{proj}_lora"
                    linear.weight += pai[f"{key}.up.weight"] @ pai[f"{key}.down.weight"]
    kohya = {}  # the same weights as the PAI LoRA, in kohya/A1111 naming (alpha = rank: scale 1)
    for key, tensor in pai.items():
        module, rest = key.split(".processor.")
        proj = rest.split("_lora.")[0].replace("to_out", "to_out_0")
        stem = "lora_unet_" + module.replace(".", "_") + "_" + proj
        kohya[f"{stem}.{'lora_down' if '.down.' in rest else 'lora_up'}.weight"] = tensor
        kohya[f"{stem}.alpha"] = torch.tensor(float(RANK))
    save_file(kohya, root / "kohya.safetensors")
    save_file({"foo.weight": torch.ones(3), "bar.bias": torch.zeros(3)}, root / "garbage.safetensors")
    (root / "corrupt.safetensors").write_bytes(b"not a safetensors file at all")
    (root / "empty").mkdir()
    return {
        "peft": str(root / "peft"),
        "peft_expected": render(pipe, unet=unet, text_encoder=text_encoder),
        "pai": _save_pai(root / "pai", pai),
        "pai_expected": render(pipe, unet=merged),
        "pai2": _save_pai(root / "pai2", _pai_state(pipe.unet, seed=3)),
        "wrong_shape": _save_pai(root / "wrong", _pai_state(pipe.unet, seed=4, extra_inputs=3)),
        "kohya": str(root / "kohya.safetensors"),
        "garbage": str(root / "garbage.safetensors"),
        "corrupt": str(root / "corrupt.safetensors"),
        "empty": str(root / "empty"),
        "root": root,
    }


@pytest.fixture(scope="session")
def base_image(demo_dir: str) -> np.ndarray:
    return render(_load(demo_dir))


@pytest.fixture()
def pipe(demo_dir: str) -> Any:
    return _load(demo_dir)


def _with(pipe: Any, manager: LoraManager, loras: list[tuple[str, str, float]]) -> np.ndarray:
    manager.activate(pipe, loras)
    return render(pipe)


# ---------------------------------------------------------------- formats


def test_diffusers_peft_format_gives_the_trained_output(pipe: Any, files: dict[str, Any], base_image: Any) -> None:
    image = _with(pipe, LoraManager(), [("peft", files["peft"], 1.0)])
    assert _differs(image, base_image)
    np.testing.assert_allclose(image, files["peft_expected"], atol=1e-3)


def test_pai_attention_processor_format_matches_hand_merged_weights(
    pipe: Any, files: dict[str, Any], base_image: Any
) -> None:
    state = load_lora_state(files["pai"])
    assert all(key.startswith("unet.") for key in state)
    image = _with(pipe, LoraManager(), [("pai", files["pai"], 1.0)])
    assert _differs(image, base_image)
    np.testing.assert_allclose(image, files["pai_expected"], atol=1e-3)


def test_kohya_format_matches_the_same_weights_in_pai_format(pipe: Any, files: dict[str, Any]) -> None:
    image = _with(pipe, LoraManager(), [("kohya", files["kohya"], 1.0)])
    np.testing.assert_allclose(image, files["pai_expected"], atol=1e-3)


# ---------------------------------------------------------------- weights and switching


def test_weight_zero_gives_the_base_output_exactly(pipe: Any, files: dict[str, Any], base_image: Any) -> None:
    assert np.array_equal(_with(pipe, LoraManager(), [("peft", files["peft"], 0.0)]), base_image)


def test_weight_scales_the_effect(pipe: Any, files: dict[str, Any], base_image: Any) -> None:
    manager = LoraManager()
    half = _with(pipe, manager, [("pai", files["pai"], 0.5)])
    full = _with(pipe, manager, [("pai", files["pai"], 1.0)])
    assert _differs(half, full)
    assert _differs(half, base_image)


def test_two_loras_at_once_differ_from_either_alone(pipe: Any, files: dict[str, Any], base_image: Any) -> None:
    manager = LoraManager()
    both = _with(pipe, manager, [("peft", files["peft"], 1.0), ("pai", files["pai"], 1.0)])
    peft_only = _with(pipe, manager, [("peft", files["peft"], 1.0)])
    pai_only = _with(pipe, manager, [("pai", files["pai"], 1.0)])
    assert _differs(both, peft_only) and _differs(both, pai_only) and _differs(both, base_image)
    np.testing.assert_allclose(peft_only, files["peft_expected"], atol=1e-3)  # the other one is inactive again
    np.testing.assert_allclose(pai_only, files["pai_expected"], atol=1e-3)


def test_a_request_without_lora_gets_the_base_output_exactly(pipe: Any, files: dict[str, Any], base_image: Any) -> None:
    manager = LoraManager()
    for name in ("peft", "pai"):  # the peft LoRA also patches the text encoder
        assert _differs(_with(pipe, manager, [(name, files[name], 1.0)]), base_image)
        assert np.array_equal(_with(pipe, manager, []), base_image)


def test_switching_back_and_forth_repeats_outputs_exactly(pipe: Any, files: dict[str, Any]) -> None:
    manager = LoraManager()
    first = _with(pipe, manager, [("peft", files["peft"], 1.0)])
    other = _with(pipe, manager, [("pai", files["pai"], 0.7)])
    again = _with(pipe, manager, [("peft", files["peft"], 1.0)])
    assert _differs(first, other)
    assert np.array_equal(first, again)


def test_each_lora_is_loaded_once_and_the_least_recently_used_is_evicted(
    pipe: Any, files: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[str] = []
    real_load = pipe.load_lora_weights

    def counting_load(state: dict[str, torch.Tensor], adapter_name: str) -> None:
        loads.append(adapter_name)
        real_load(state, adapter_name=adapter_name)

    monkeypatch.setattr(pipe, "load_lora_weights", counting_load)
    manager = LoraManager(max_loaded=2)
    pai = _with(pipe, manager, [("pai", files["pai"], 1.0)])
    pai2 = _with(pipe, manager, [("pai2", files["pai2"], 1.0)])
    assert np.array_equal(_with(pipe, manager, [("pai", files["pai"], 1.0)]), pai)  # now the most recently used
    assert len(loads) == 2
    _with(pipe, manager, [("peft", files["peft"], 1.0)])
    assert manager.loaded() == ["pai", "peft"]  # "pai2", the least recently used, was deleted
    assert len(pipe.get_list_adapters()["unet"]) == 2
    assert np.array_equal(_with(pipe, manager, [("pai2", files["pai2"], 1.0)]), pai2)
    assert manager.loaded() == ["peft", "pai2"]
    assert len(loads) == 4
    # At the cap, a LoRA of the same request is not evicted to make room, even when least recently used.
    both = _with(pipe, manager, [("pai", files["pai"], 1.0), ("peft", files["peft"], 1.0)])
    assert manager.loaded() == ["pai", "peft"]
    assert len(loads) == 5
    assert _differs(both, pai)


def test_a_replaced_file_is_loaded_again(pipe: Any, files: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "lora.bin"
    pai_file, pai2_file = (
        Path(files["pai"], "pytorch_lora_weights.bin"),
        Path(files["pai2"], "pytorch_lora_weights.bin"),
    )
    path.write_bytes(pai_file.read_bytes())
    manager = LoraManager()
    before = _with(pipe, manager, [("x", str(path), 1.0)])
    path.write_bytes(pai2_file.read_bytes())
    os.utime(path, ns=(1, 1))  # a different mtime even on a coarse-grained file system
    after = _with(pipe, manager, [("x", str(path), 1.0)])
    assert _differs(before, after)


def test_views_share_the_loaded_loras_and_a_reloaded_model_gets_them_again(
    demo_dir: str, files: dict[str, Any], base_image: Any
) -> None:
    manager = LoraManager()
    pipe = _load(demo_dir)
    first = _with(pipe, manager, [("pai", files["pai"], 1.0)])
    view = StableDiffusionPipeline(**pipe.components)  # same UNet: nothing to load again
    manager.activate(view, [])
    assert np.array_equal(render(pipe), base_image)
    manager.activate(view, [("pai", files["pai"], 1.0)])
    assert np.array_equal(render(pipe), first)
    assert len(pipe.get_list_adapters()["unet"]) == 1
    assert np.array_equal(_with(_load(demo_dir), manager, [("pai", files["pai"], 1.0)]), first)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("key", ["garbage", "wrong_shape"])
def test_files_that_are_no_lora_for_this_model_are_invalid(
    pipe: Any, files: dict[str, Any], base_image: Any, key: str
) -> None:
    manager = LoraManager()
    pai = _with(pipe, manager, [("pai", files["pai"], 1.0)])
    with pytest.raises(InvalidParameters) as caught:
        manager.activate(pipe, [(key, files[key], 1.0)])
    assert caught.value.code == "invalid_lora"
    assert manager.loaded() == ["pai"]
    assert np.array_equal(render(pipe), base_image)  # a failed activation leaves no LoRA active
    assert np.array_equal(_with(pipe, manager, [("pai", files["pai"], 1.0)]), pai)


def test_garbage_keys_are_rejected_by_the_reader(files: dict[str, Any]) -> None:
    with pytest.raises(InvalidParameters) as caught:
        load_lora_state(files["garbage"])
    assert caught.value.code == "invalid_lora"


@pytest.mark.parametrize("key", ["corrupt", "empty", "missing"])
def test_unreadable_paths_are_model_unavailable(pipe: Any, files: dict[str, Any], key: str) -> None:
    path = files.get(key, str(files["root"] / "no-such-lora.safetensors"))
    with pytest.raises(ModelUnavailable):
        LoraManager().activate(pipe, [("x", path, 1.0)])


def test_requests_with_duplicate_too_many_or_non_finite_loras_are_invalid(pipe: Any, files: dict[str, Any]) -> None:
    manager = LoraManager(max_loaded=2)
    cases = {
        "invalid_lora": [("a", files["pai"], 1.0), ("a", files["pai"], 0.5)],
        "too_many_loras": [("a", files["pai"], 1.0), ("b", files["pai2"], 1.0), ("c", files["kohya"], 1.0)],
    }
    for code, loras in cases.items():
        with pytest.raises(InvalidParameters) as caught:
            manager.activate(pipe, loras)
        assert caught.value.code == code
    with pytest.raises(InvalidParameters):
        manager.activate(pipe, [("a", files["pai"], float("nan"))])
    assert manager.loaded() == []
