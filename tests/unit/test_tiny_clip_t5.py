"""The tiny CLIP/T5-family pipelines build offline, load back from their folders and generate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import diffusers as _diffusers
import numpy as np
import pytest
import torch

from app.adapters.diffusers.tiny.clip_t5 import BUILDERS, NATIVE_SIZE
from app.adapters.diffusers.tiny.tokenizers import clip_tokenizer, gemma_tokenizer, t5_tokenizer

diffusers: Any = _diffusers

# Calls that the families' defaults would make slow or refuse at a tiny size.
_EXTRA: dict[str, dict[str, Any]] = {
    "pixart-sigma": {"use_resolution_binning": False},
    "sana": {"use_resolution_binning": False, "complex_human_instruction": None},
    "hunyuandit": {"use_resolution_binning": False},
}


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_builds_loads_and_generates(family: str, tmp_path: Path) -> None:
    folder = BUILDERS[family](str(tmp_path / family), 0)
    index = json.loads((Path(folder) / "model_index.json").read_text(encoding="utf-8"))
    pipe = getattr(diffusers, index["_class_name"]).from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    size = NATIVE_SIZE[family]
    kwargs: dict[str, Any] = {
        "prompt": "一只猫 a cat on a snowy mountain",
        "num_inference_steps": 2,
        "output_type": "np",
        "generator": torch.Generator().manual_seed(0),
        **_EXTRA.get(family, {}),
    }
    if "Img2Img" in index["_class_name"]:  # the refiner: image to image only
        kwargs.update(image=torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1)), strength=1.0)
    elif "InstructPix2Pix" in index["_class_name"]:  # an image and an instruction
        kwargs.update(image=torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1)))
    else:
        kwargs.update(height=size, width=size)
    images = pipe(**kwargs).images
    assert images.shape == (1, size, size, 3)
    assert np.isfinite(images).all()


def test_same_seed_same_weights(tmp_path: Path) -> None:
    first = Path(BUILDERS["flux"](str(tmp_path / "a"), 3))
    second = Path(BUILDERS["flux"](str(tmp_path / "b"), 3))
    files = sorted(path.relative_to(first) for path in first.rglob("*") if path.is_file())
    assert files
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x", encoding="utf-8")
    with pytest.raises(FileExistsError):
        BUILDERS["sd3"](str(tmp_path), 0)


@pytest.mark.parametrize("build", [clip_tokenizer, t5_tokenizer, gemma_tokenizer])
def test_tokenizers_are_deterministic_and_bounded(build: Any) -> None:
    text = "A painting of a squirrel, 一只猫 42!"
    first, second = build(), build()
    assert first.get_vocab() == second.get_vocab()
    assert first(text).input_ids == second(text).input_ids
    assert first.model_max_length < 10_000
    assert first.unk_token_id not in first("a red apple on the table", add_special_tokens=False).input_ids
