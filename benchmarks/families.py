"""Every served family on its tiny pipeline (CPU): Atelier's overhead, its batching gain, and model switching.

- ``overhead_ratio``: Atelier's submit→done (use case, SQLite, executor, PNG store) against the raw diffusers
  pipeline call with the same prompt, size, steps and seed (medians over alternating rounds; target ≤ 1.10).
- ``batching_ratio``: 8 concurrent jobs with cross-request batching on against off (throughput; target ≥ 2
  for SDXL-tiny).
- ``switch_speedup``: alternating three families, Atelier's model cache against reloading before every job
  (target ≥ 5).

Tiny models are noise generators: these figures are about the serving path, not image quality.

    python -m benchmarks.families [--families sdxl,flux] [--steps 20] [--rounds 3] [--jobs 8]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import emit, environment, summary

SWITCHED = ("sdxl", "sd3", "flux")
PROMPT = "a red house by a lake"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default="", help="comma-separated; default: every family with txt2img")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--switches", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--window", type=float, default=0.1, help="batch window in seconds")
    args = parser.parse_args()
    env = environment(args.threads)

    import diffusers
    import torch

    from app.adapters.diffusers.call_arguments import prompt_arguments
    from app.adapters.diffusers.generator import quiet_libraries
    from app.adapters.diffusers.tiny import BUILDERS, build_tiny
    from app.domain.families import Family, profile
    from app.domain.specs import Mode
    from app.entrypoints.library import Atelier

    quiet_libraries()
    chosen = [f for f in args.families.split(",") if f] or [
        f for f in sorted(BUILDERS) if Mode.TXT2IMG in profile(Family(f)).modes()
    ]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as data_dir:
        folders = {f: build_tiny(f, str(Path(data_dir) / "tiny" / f)) for f in {*chosen, *SWITCHED}}
        serial = Atelier.open(data_dir=data_dir, max_batch=1)
        batched = Atelier.open(data_dir=data_dir, max_batch=args.jobs, batch_window=args.window)
        for family, folder in folders.items():
            serial.add_model(family, folder, replace=True)

        for family in chosen:
            size = serial.model(family).default_size
            settings = {"model": family, "width": size, "height": size, "steps": args.steps}
            index = json.loads((Path(folders[family]) / "model_index.json").read_text())
            pipe: Any = getattr(diffusers, index["_class_name"]).from_pretrained(folders[family], local_files_only=True)
            pipe.set_progress_bar_config(disable=True)
            # The arguments Atelier passes for this family's guidance convention (true CFG on for Qwen-Image,
            # no resolution binning, ...), so that both sides do the same work.
            text = prompt_arguments(Family(family), pipe, [PROMPT], [""], None)

            def raw(seed: int, pipe: Any = pipe, size: int = size, text: dict[str, Any] = text) -> float:
                start = time.perf_counter()
                generator = torch.Generator().manual_seed(seed)
                arguments = {k: list(v) if isinstance(v, list) else v for k, v in text.items()}  # fresh lists
                pipe(**arguments, width=size, height=size, num_inference_steps=args.steps, generator=generator)
                return time.perf_counter() - start

            def served(seed: int, settings: dict[str, Any] = settings) -> float:
                start = time.perf_counter()
                job = serial.wait(serial.submit(PROMPT, seed=seed, **settings).id)
                assert job.status.value == "succeeded", job.error_message
                return time.perf_counter() - start

            def burst(atelier: Atelier, round_no: int, settings: dict[str, Any] = settings) -> float:
                start = time.perf_counter()
                seeds = [round_no * 100 + i for i in range(args.jobs)]
                jobs = [atelier.submit(f"house number {seed}", seed=seed, **settings) for seed in seeds]
                finished = [atelier.wait(job.id) for job in jobs]
                assert all(j.status.value == "succeeded" for j in finished), [j.error_message for j in finished]
                return time.perf_counter() - start

            raw(0), served(0), burst(batched, 99)  # warm-up: loads, allocator
            timings: dict[str, list[float]] = {"raw": [], "atelier": [], "serial": [], "batched": []}
            for round_no in range(args.rounds):
                timings["raw"].append(raw(round_no + 1))
                timings["atelier"].append(served(round_no + 1))
            for round_no in range(max(2, args.rounds - 1)):
                timings["serial"].append(burst(serial, round_no))
                timings["batched"].append(burst(batched, round_no))
            medians = {name: summary(values) for name, values in timings.items()}
            results[family] = {
                "overhead_ratio": round(medians["atelier"]["median_s"] / medians["raw"]["median_s"], 3),
                "batching_ratio": round(medians["serial"]["median_s"] / medians["batched"]["median_s"], 3),
                "detail": medians,
                "size": size,
            }
            del pipe
            print(json.dumps({family: results[family]}), flush=True)

        generator = serial.container.generator()
        switch: dict[str, list[float]] = {"cached": [], "reload": []}

        def switch_round(reload: bool) -> None:
            for k in range(args.switches):
                family = SWITCHED[k % len(SWITCHED)]
                if reload:
                    generator.unload_all()
                size = serial.model(family).default_size
                job = serial.submit("a cat", model=family, width=size, height=size, steps=1, seed=k)
                assert serial.wait(job.id).status.value == "succeeded"

        for reload in (False, True, False, True):
            if not reload:
                switch_round(reload=False)  # untimed: the three models back in the cache after a reload round
            start = time.perf_counter()
            switch_round(reload)
            switch["reload" if reload else "cached"].append(time.perf_counter() - start)
        serial.close()
        batched.close()

    speedup = round(summary(switch["reload"])["median_s"] / summary(switch["cached"])["median_s"], 3)
    detail = {"benchmark": "families", "steps": args.steps, "jobs": args.jobs, **env, "switch": switch}
    detail["families"] = results
    emit(
        detail,
        {
            "families": {f: {k: r[k] for k in ("overhead_ratio", "batching_ratio")} for f, r in results.items()},
            "switch_speedup": speedup,
            "targets": {"overhead_ratio_max": 1.10, "batching_ratio_min_sdxl": 2.0, "switch_speedup_min": 5.0},
        },
    )


if __name__ == "__main__":
    main()
