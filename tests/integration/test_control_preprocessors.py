"""ControlNet preprocessors: OpenCV canny, the luminance depth heuristic, DPT on a tiny random-init model, and the
one fit-then-preprocess path that generation and the control-map preview share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from app.adapters.diffusers import modes
from app.adapters.imaging.control import (
    DptDepthEstimator,
    LuminanceDepthEstimator,
    OpenCvControlPreprocessor,
    canny,
    conditioning_map,
    preprocess_control,
)
from app.adapters.imaging.ops import decode_image, to_rgb
from app.domain.errors import InvalidParameters, ModelUnavailable
from app.domain.generation import GenerationParams
from app.domain.models import ModelInfo, ModelKind
from app.domain.specs import ControlKind, ControlSpec, ResizeMode
from app.ports.generation import GenerationRequest, RgbImage

X0, Y0, X1, Y1 = 12, 20, 35, 49  # an off-centre rectangle, so a flipped or shifted edge map fails


def rectangle(size: int = 64) -> Image.Image:
    image = Image.new("RGB", (size, size), "black")
    ImageDraw.Draw(image).rectangle((X0, Y0, X1, Y1), fill="white")
    return image


def test_canny_traces_the_outline_of_a_white_rectangle_and_nothing_else() -> None:
    edges = canny(rectangle())
    array = np.asarray(edges)
    assert (edges.mode, edges.size) == ("RGB", (64, 64))
    assert (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all()
    assert set(np.unique(array)) == {0, 255}
    ys, xs = np.nonzero(array[..., 0])
    # every edge pixel lies within one pixel of the outline
    on_side = ((np.abs(xs - X0) <= 1) | (np.abs(xs - X1) <= 1)) & (ys >= Y0 - 1) & (ys <= Y1 + 1)
    on_top_bottom = ((np.abs(ys - Y0) <= 1) | (np.abs(ys - Y1) <= 1)) & (xs >= X0 - 1) & (xs <= X1 + 1)
    assert (on_side | on_top_bottom).all()
    # and the whole outline is traced: every row of each side, every column of the top and bottom
    for x in (X0, X1):
        assert set(range(Y0 + 1, Y1)) <= set(ys[on_side & (np.abs(xs - x) <= 1)])
    for y in (Y0, Y1):
        assert set(range(X0 + 1, X1)) <= set(xs[on_top_bottom & (np.abs(ys - y) <= 1)])


def test_canny_sees_nothing_in_a_flat_image_and_checks_thresholds() -> None:
    assert not np.asarray(canny(Image.new("RGB", (32, 32), "grey"))).any()
    with pytest.raises(InvalidParameters):
        canny(rectangle(), low=200, high=100)


def halves(first: str, second: str, *, vertical: bool, size: tuple[int, int] = (48, 64)) -> Image.Image:
    """``first`` on the top (or left) half, ``second`` on the other."""
    width, height = size
    image = Image.new("RGB", size, second)
    image.paste(Image.new("RGB", (width, height // 2) if vertical else (width // 2, height), first), (0, 0))
    return image


def test_luminance_depth_map_shape_and_range() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    depth = LuminanceDepthEstimator().estimate_image(Image.fromarray(pixels))
    array = np.asarray(depth)
    assert (depth.mode, depth.size) == ("RGB", (50, 30))
    assert (array[..., 0] == array[..., 2]).all()
    assert (array.min(), array.max()) == (0, 255)


def test_bright_top_dark_bottom_puts_the_bottom_nearest() -> None:
    array = np.asarray(LuminanceDepthEstimator().estimate_image(halves("white", "black", vertical=True)))[..., 0]
    assert array[-8:].mean() > array[:8].mean() + 100
    assert (np.diff(array[:, 24].astype(int)) >= 0).all()  # depth never decreases downwards


def test_uniform_image_gives_the_vertical_prior_alone() -> None:
    array = np.asarray(LuminanceDepthEstimator().estimate_image(Image.new("RGB", (16, 20), "grey")))[..., 0]
    assert (array == array[:, :1]).all()  # constant along each row
    assert array[0, 0] == 0 and array[-1, 0] == 255 and (np.diff(array[:, 0].astype(int)) > 0).all()


def test_luminance_cue_darker_is_nearer() -> None:
    image = halves("black", "white", vertical=False)  # dark left, bright right: the prior cannot tell them apart
    array = np.asarray(LuminanceDepthEstimator().estimate_image(image))[..., 0].astype(int)
    assert array[:, :8].mean() > array[:, -8:].mean() + 60
    # with the prior switched off, a dark top outranks a bright bottom
    flipped = np.asarray(
        LuminanceDepthEstimator(prior_weight=0.0).estimate_image(halves("black", "white", vertical=True))
    )
    assert flipped[:8, :, 0].mean() > flipped[-8:, :, 0].mean() + 200


@pytest.fixture(scope="module")
def tiny_dpt(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random-init DPT depth model (ViT variant, ~0.1 M parameters) and its processor, saved like DPT-large."""
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = DPTConfig(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=37,
        image_size=32,
        patch_size=8,
        backbone_out_indices=(0, 1, 2, 3),
        neck_hidden_sizes=(8, 16, 32, 32),
        fusion_hidden_size=16,
        use_auxiliary_head=False,
    )
    folder = str(tmp_path_factory.mktemp("dpt") / "tiny-dpt")
    DPTForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessorPil(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(folder)
    return folder


def test_dpt_adapter_returns_a_depth_map_of_the_input_size(tiny_dpt: str) -> None:
    estimator = DptDepthEstimator(tiny_dpt)
    depth = estimator.estimate_image(halves("white", "black", vertical=True, size=(70, 50)))
    array = np.asarray(depth)
    assert (depth.mode, depth.size) == ("RGB", (70, 50))
    assert (array[..., 0] == array[..., 1]).all()
    assert (array.min(), array.max()) == (0, 255)  # min-max scaled, and the random model is not constant


def test_dpt_adapter_reports_a_missing_model(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable):
        DptDepthEstimator(str(tmp_path / "nowhere"))


def test_preprocess_control_edges_lie_on_the_rectangle_border_and_not_inside() -> None:
    array = np.asarray(preprocess_control(rectangle(), ControlKind.CANNY, LuminanceDepthEstimator()))[..., 0]
    assert array.shape == (64, 64) and array.any()
    ys, xs = np.nonzero(array)
    near_x = (np.abs(xs - X0) <= 1) | (np.abs(xs - X1) <= 1)
    near_y = (np.abs(ys - Y0) <= 1) | (np.abs(ys - Y1) <= 1)
    assert (near_x | near_y).all()
    assert not array[Y0 + 2 : Y1 - 1, X0 + 2 : X1 - 1].any()  # nothing inside
    assert not array[: Y0 - 1].any() and not array[Y1 + 2 :].any()  # nothing above or below


def test_preprocess_control_none_is_the_image_and_depth_the_estimators_map() -> None:
    depth = LuminanceDepthEstimator()
    assert preprocess_control(rectangle(), ControlKind.NONE, depth).tobytes() == rectangle().tobytes()
    estimated = preprocess_control(rectangle(), ControlKind.DEPTH, depth)
    assert estimated.tobytes() == depth.estimate_image(rectangle()).tobytes()


@pytest.mark.parametrize("mode", list(ResizeMode))
@pytest.mark.parametrize("kind", list(ControlKind))
def test_conditioning_map_has_the_requested_size(kind: ControlKind, mode: ResizeMode) -> None:
    drawn = conditioning_map(rectangle(50), kind, 96, 64, mode, LuminanceDepthEstimator())
    assert (drawn.mode, drawn.size) == ("RGB", (96, 64))


@pytest.mark.parametrize("mode", list(ResizeMode))
@pytest.mark.parametrize("kind", list(ControlKind))
def test_the_preview_draws_the_map_a_controlnet_job_sees(tmp_path: Path, kind: ControlKind, mode: ResizeMode) -> None:
    """``modes.control_map`` (what the pipeline gets) and the preview adapter agree pixel for pixel."""
    upload = Image.new("RGBA", (90, 50), (0, 0, 0, 0))  # transparency too: both composite it over white
    ImageDraw.Draw(upload).rectangle((10, 8, 60, 40), fill=(200, 30, 30, 255))
    path = tmp_path / "control.png"
    upload.save(path)
    params = GenerationParams(
        prompt="房子",
        model="demo",
        width=64,
        height=80,
        resize_mode=mode,
        controls=(ControlSpec(image="upload-" + "a" * 32, kind=kind),),
    )
    request = GenerationRequest(
        model=ModelInfo(name="demo", path="unused", source="unused"),
        params=params,
        inputs={"control0": str(path)},
        controlnets=(ModelInfo(name=kind.value, path="unused", source="unused", kind=ModelKind.CONTROLNET),),
    )
    depth = LuminanceDepthEstimator()
    seen = modes.control_map(request, depth)
    rgb = to_rgb(decode_image(path.read_bytes()))  # how the facade reads an upload for the preview
    preview = OpenCvControlPreprocessor(depth).preprocess(
        RgbImage(rgb.width, rgb.height, rgb.tobytes()), kind, 64, 80, mode
    )
    assert (seen.width, seen.height) == (preview.width, preview.height) == (64, 80)
    assert seen.tobytes() == preview.rgb
