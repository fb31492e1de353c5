"""Run one decoder-only stage (``sharpen``, ``shade`` or ``palette``) on an exported demo model's VAE, in place.

Those stages freeze the encoder, so the latent space, and with it the UNet trained on it, stays as it was: running
one on the exported decoder gives the model a full ``train-demo`` run with that stage would have, up to the fp16
rounding of the export. The shipped model's later decoder stages were added this way (its ``atelier-demo.json``
says which), and this reproduces them:

    python -m app.lab.demo_world.refine app/adapters/demo_world/model palette

The stage's settings come from ``TrainConfig`` (defaults, or ``--steps``); the model's marker records them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

DECODER_STAGES = ("sharpen", "shade", "palette")


def refine(model_dir: str, stage: str, steps: int | None = None, threads: int = 2) -> dict[str, Any]:
    """Run decoder stage ``stage`` on ``model_dir``'s VAE and write the VAE back (in its dtype); returns what ran."""
    import torch
    from diffusers import AutoencoderKL

    from app.lab.demo_world import vae_stages
    from app.lab.demo_world.checkpoints import Checkpoints
    from app.lab.demo_world.config import TrainConfig

    if stage not in DECODER_STAGES:
        raise ValueError(f"stage must be one of {', '.join(DECODER_STAGES)}")
    torch.set_num_threads(threads)
    folder = Path(model_dir) / "vae"
    shipped = AutoencoderKL.from_pretrained(str(folder))  # type: ignore[no-untyped-call]
    dtype = _stored_dtype(folder)  # loading upcasts; the export is fp16
    overrides: dict[str, Any] = {f"{stage}_steps": steps} if steps is not None else {}
    config = TrainConfig(threads=threads, **overrides)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as work:
        files = Checkpoints(Path(work), {})
        files.save("vae", {"model": {k: v.float() for k, v in shipped.state_dict().items()}})
        run = {"sharpen": vae_stages.sharpen_decoder, "shade": vae_stages.shade_decoder}
        run["palette"] = vae_stages.palette_decoder
        run[stage](files, config, lambda *_: None)
        refined = vae_stages.load_vae(files)
    refined.register_to_config(scaling_factor=shipped.config.scaling_factor)
    exported = (folder / "config.json").read_text(encoding="utf-8")
    refined.to(dtype).save_pretrained(str(folder), safe_serialization=True)
    (folder / "config.json").write_text(exported, encoding="utf-8")  # the weights change, not the layout
    marker_path = Path(model_dir) / "atelier-demo.json"
    marker = json.loads(marker_path.read_text(encoding="utf-8"))
    prefix = f"{stage}_"
    marker.setdefault("config", {}).update({k: v for k, v in asdict(config).items() if k.startswith(prefix)})
    marker_path.write_text(json.dumps(marker, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return {"stage": stage, "steps": getattr(config, f"{stage}_steps"), "minutes": (time.monotonic() - started) / 60}


def _stored_dtype(folder: Path) -> Any:
    from safetensors import safe_open

    with safe_open(str(folder / "diffusion_pytorch_model.safetensors"), "pt") as weights:
        return weights.get_tensor(next(iter(weights.keys()))).dtype


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("stage", choices=DECODER_STAGES)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    result = refine(args.model_dir, args.stage, args.steps, args.threads)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
