"""ControlNet preprocessors: canny edges (OpenCV) and depth maps (a weight-free heuristic, or a local DPT model).

Both return 3-channel RGB maps of the input's size, as the ControlNet canny and depth checkpoints expect.
:func:`conditioning_map` (fit, then preprocess) is the one path from a control image to what a ControlNet sees:
generation (``app.adapters.diffusers.modes``) and the preview (:class:`OpenCvControlPreprocessor`) both use it.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from PIL import Image

from app.adapters.imaging.ops import resize_for, to_rgb
from app.domain.errors import InvalidParameters, ModelUnavailable
from app.domain.specs import ControlKind, ResizeMode
from app.ports.generation import ControlPreprocessor, DepthEstimator, RgbImage


def canny(image: Image.Image, low: int = 100, high: int = 200) -> Image.Image:
    """White edges on black from ``cv2.Canny`` on the greyscale image (hysteresis thresholds ``low``/``high``)."""
    if not 0 <= low <= high:
        raise InvalidParameters(f"Canny thresholds need 0 <= low <= high, got {low} and {high}.", field="low")
    grey = np.asarray(to_rgb(image).convert("L"))
    return Image.fromarray(cv2.Canny(grey, low, high)).convert("RGB")


def preprocess_control(image: Image.Image, kind: ControlKind, depth: DepthEstimator) -> Image.Image:
    """An RGB map of ``image``'s size: canny edges, ``depth``'s estimate, or (``none``) the image itself."""
    rgb = to_rgb(image)
    if kind is ControlKind.CANNY:
        return canny(rgb)
    if kind is ControlKind.DEPTH:
        estimated = depth.estimate(RgbImage(rgb.width, rgb.height, rgb.tobytes()))
        return Image.frombytes("RGB", (estimated.width, estimated.height), estimated.rgb)
    return rgb


def conditioning_map(
    image: Image.Image, kind: ControlKind, width: int, height: int, resize_mode: ResizeMode, depth: DepthEstimator
) -> Image.Image:
    """What a ControlNet sees for a control image: fitted to ``width``×``height`` by ``resize_mode``, then
    preprocessed by :func:`preprocess_control`."""
    return preprocess_control(resize_for(to_rgb(image), width, height, ResizeMode(resize_mode).value), kind, depth)


class OpenCvControlPreprocessor(ControlPreprocessor):
    """The preview of a control map, drawn by :func:`conditioning_map` with the generator's depth estimator."""

    def __init__(self, depth: DepthEstimator) -> None:
        self._depth = depth

    def preprocess(
        self, image: RgbImage, kind: ControlKind, width: int, height: int, resize_mode: ResizeMode
    ) -> RgbImage:
        picture = Image.frombytes("RGB", (image.width, image.height), image.rgb)
        drawn = conditioning_map(picture, ControlKind(kind), width, height, resize_mode, self._depth)
        return RgbImage(drawn.width, drawn.height, drawn.tobytes())


def _to_depth_image(depth: np.ndarray[Any, Any]) -> Image.Image:
    """Min-max scale a near-is-large float map to 0-255 and repeat it over three channels."""
    span = float(depth.max() - depth.min())
    scaled = (depth - depth.min()) / span if span > 0 else np.zeros_like(depth)
    return Image.fromarray(np.round(scaled * 255).astype(np.uint8)).convert("RGB")


class _PictureDepth(DepthEstimator):
    """The port's raw-pixel interface over an ``estimate_image`` working on PIL images."""

    def estimate(self, image: RgbImage) -> RgbImage:
        depth = self.estimate_image(Image.frombytes("RGB", (image.width, image.height), image.rgb))
        return RgbImage(depth.width, depth.height, depth.tobytes())

    def estimate_image(self, image: Image.Image) -> Image.Image:
        raise NotImplementedError


class LuminanceDepthEstimator(_PictureDepth):
    """A depth map guessed from brightness and position, for deployments without depth-estimator weights.

    No depth model ships offline (see the offline-models research), so this default only has to give a depth
    ControlNet a smooth, plausible layout. Two cues, each scaled to 0-1 and mixed by ``prior_weight``:

    * **inverse luminance**, blurred (sigma = ``blur_fraction`` of the short side) and contrast-stretched
      between the 2nd and 98th percentiles: in outdoor scenes sky and haze (aerial perspective) are bright and
      far, foreground objects darker and near;
    * **a vertical ramp**: the bottom of a photo is usually the ground nearest the camera.

    Output follows MiDaS/DPT maps: near = bright, 0-255, min-max normalised. Limits: it is not a measurement.
    It is wrong for a bright subject on a dark background (studio portraits, night scenes), knows nothing of
    occlusion or object boundaries, and gives a pure ramp for a uniform image. Use :class:`DptDepthEstimator`
    where DPT weights are available.
    """

    def __init__(self, prior_weight: float = 0.5, blur_fraction: float = 0.02) -> None:
        if not 0.0 <= prior_weight <= 1.0:
            raise ValueError("prior_weight must be within [0, 1]")
        self._prior_weight = prior_weight
        self._blur_fraction = blur_fraction

    def estimate_image(self, image: Image.Image) -> Image.Image:
        """A greyscale-in-RGB depth map of ``image``'s size, near = bright."""
        grey = np.asarray(to_rgb(image).convert("L"), dtype=np.float32) / 255.0
        height, width = grey.shape
        sigma = max(0.5, self._blur_fraction * min(width, height))
        far = cv2.GaussianBlur(grey, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)
        low, high = np.percentile(far, [2, 98])
        near = np.clip((high - far) / (high - low), 0.0, 1.0) if high > low else np.zeros_like(far)
        ramp = np.repeat(np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None], width, axis=1)
        return _to_depth_image((1.0 - self._prior_weight) * near + self._prior_weight * ramp)


class DptDepthEstimator(_PictureDepth):
    """Monocular depth from a local ``transformers`` depth model folder (DPT-large, as the Chinese WebUI uses).

    The folder holds ``config.json``, the weights and ``preprocessor_config.json``; nothing is fetched.
    DPT predicts relative inverse depth, so after min-max scaling near is bright.
    """

    def __init__(self, model_dir: str, device: str = "cpu") -> None:
        import torch
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        try:
            self._processor = AutoImageProcessor.from_pretrained(model_dir, local_files_only=True)  # type: ignore[no-untyped-call]
            self._model = AutoModelForDepthEstimation.from_pretrained(model_dir, local_files_only=True)
        except (OSError, ValueError) as e:
            raise ModelUnavailable(f"No depth model can be loaded from {model_dir}: {e}") from e
        self._model.to(torch.device(device)).eval()
        self._device = device

    def estimate_image(self, image: Image.Image) -> Image.Image:
        """A greyscale-in-RGB depth map of ``image``'s size, near = bright."""
        import torch

        rgb = to_rgb(image)
        inputs = self._processor(images=rgb, return_tensors="pt").to(self._device)
        with torch.inference_mode():
            outputs = self._model(**inputs)
        depth = self._processor.post_process_depth_estimation(outputs, target_sizes=[(rgb.height, rgb.width)])
        return _to_depth_image(depth[0]["predicted_depth"].float().cpu().numpy())
