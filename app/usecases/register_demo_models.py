"""Register the offline demo models, so every mode of generation runs without a network:

- ``demo``: the demo world's Chinese text-to-image model, trained by the project and shipped with it;
- ``demo-tiny``: a random-init pipeline of the same family (its images are noise), the floor the
  trained model is measured against;
- random-init ControlNets ``canny`` and ``depth`` and LoRAs ``demo-style-a``/``-b`` shaped for ``demo``.

Built folders are kept in the models dir and rebuilt only when missing (or with ``force``).
"""

from __future__ import annotations

from pathlib import Path

from app.domain.errors import ModelUnavailable
from app.domain.models import ModelInfo, ModelKind
from app.ports.generation import DemoModels, ModelCatalog


class RegisterDemoModels:
    def __init__(self, catalog: ModelCatalog, demo: DemoModels, models_dir: str) -> None:
        self._catalog, self._demo, self._models = catalog, demo, Path(models_dir)

    def __call__(self, force: bool = False, seed: int = 0) -> ModelInfo:
        """The registered ``demo`` model; ``ModelUnavailable`` when the shipped model is missing."""
        tiny = self._models / "demo-tiny"
        if force or not (tiny / "model_index.json").is_file():
            self._demo.build_pipeline(str(tiny), seed)
        self._catalog.add("demo-tiny", str(tiny), replace=True)
        shipped = self._demo.shipped()
        if not (Path(shipped) / "model_index.json").is_file():
            raise ModelUnavailable(
                "The trained demo model is missing from the package; run `atelier models train-demo`.",
                detail=shipped,
            )
        info = self._catalog.add("demo", shipped, replace=True)
        for offset, name in enumerate(("canny", "depth"), start=1):
            folder = self._models / f"demo-world-controlnet-{name}"
            if force or not (folder / "config.json").is_file():
                self._demo.build_controlnet(shipped, str(folder), seed + offset)
            self._catalog.add(name, str(folder), kind=ModelKind.CONTROLNET, replace=True)
        for offset, name in enumerate(("demo-style-a", "demo-style-b"), start=3):
            folder = self._models / f"demo-world-{name.removeprefix('demo-')}"
            if force or not (folder / "pytorch_lora_weights.safetensors").is_file():
                self._demo.build_lora(shipped, str(folder), seed + offset)
            self._catalog.add(name, str(folder), kind=ModelKind.LORA, replace=True)
        return info
