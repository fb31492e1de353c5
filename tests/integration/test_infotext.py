"""The PNG's A1111 parameters text names the sampler that actually ran and the LoRAs' file hashes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image

from app.entrypoints.library import Atelier
from tests.conftest import register_demo


def test_the_png_names_the_sampler_that_ran_and_the_lora_hash(
    tmp_path: Path, demo_models: dict[str, tuple[str, str]]
) -> None:
    with Atelier.open(data_dir=str(tmp_path)) as atelier:
        register_demo(atelier, demo_models)
        lora = next(m for m in atelier.models("lora") if m.name == "demo-style-a")
        lora_file = next(Path(lora.path).glob("*.safetensors")) if Path(lora.path).is_dir() else Path(lora.path)
        assert lora.sha256 == hashlib.sha256(lora_file.read_bytes()).hexdigest()
        job = atelier.generate("一个红色的圆形", model="demo", steps=2, seed=3, loras=["demo-style-a:0.5"], timeout=120)
        assert job.status.value == "succeeded", job.error_message
        with Image.open(atelier.image_path(job.images[0].id)) as png:
            text = png.info["parameters"]
        first, fields = text.splitlines()[0], text.splitlines()[-1]
        assert first == "一个红色的圆形 <lora:demo-style-a:0.5>"
        assert f'Lora hashes: "demo-style-a: {lora.sha256[:12]}"' in fields
        sampler = next(f for f in fields.split(", ") if f.startswith("Sampler: "))
        assert sampler != "Sampler: default" and len(sampler) > len("Sampler: ")
        named = atelier.generate("一个红色的圆形", model="demo", steps=2, seed=3, scheduler="DDIM", timeout=120)
        with Image.open(atelier.image_path(named.images[0].id)) as png:
            assert "Sampler: DDIM" in png.info["parameters"]
