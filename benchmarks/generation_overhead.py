"""What Atelier adds on top of a raw diffusers call.

(a) the demo pipeline called directly; (b) the same request through Atelier: use case,
SQLite, PNG store and the in-process executor, submit -> done. Both run in this process,
interleaved, on the same model and parameters; the headline is the ratio of medians b/a.

    python -m benchmarks.generation_overhead [--size 64] [--steps 4] [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch
    from diffusers import StableDiffusionPipeline

    from app.entrypoints.library import Atelier

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as data_dir:
        atelier = Atelier.open(data_dir=data_dir)
        model_dir = atelier.init_demo().path
        # the shipped weights are fp16; Atelier loads them as float32 on CPU, and so must the baseline
        pipe = StableDiffusionPipeline.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32)
        pipe.set_progress_bar_config(disable=True)
        prompt = "一只红色的大圆在左边，蓝色背景"

        def raw(seed: int) -> None:
            generator = torch.Generator("cpu").manual_seed(seed)
            with torch.inference_mode():
                pipe(prompt, height=args.size, width=args.size, num_inference_steps=args.steps, generator=generator)

        def through_atelier(seed: int) -> None:
            job = atelier.generate(prompt, width=args.size, height=args.size, steps=args.steps, seed=seed)
            assert job.status.value == "succeeded", job.error_message

        for seed in range(3):  # warm-up: loads, allocator, first SQLite writes
            raw(seed)
            through_atelier(seed)
        timings: dict[str, list[float]] = {"raw": [], "atelier": []}
        for seed in range(args.runs):
            for name, fn in (("raw", raw), ("atelier", through_atelier)):
                start = time.perf_counter()
                fn(seed)
                timings[name].append(time.perf_counter() - start)
        atelier.close()

    medians = {name: statistics.median(values) for name, values in timings.items()}
    detail: dict[str, Any] = {
        "benchmark": "generation_overhead",
        "size": args.size,
        "steps": args.steps,
        "runs": args.runs,
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "p90_s": {name: sorted(v)[int(0.9 * len(v)) - 1] for name, v in timings.items()},
    }
    print(json.dumps(detail))
    print(
        json.dumps(
            {
                "raw_median_s": round(medians["raw"], 5),
                "atelier_median_s": round(medians["atelier"], 5),
                "ratio": round(medians["atelier"] / medians["raw"], 4),
                "target_ratio_max": 1.15,
            }
        )
    )


if __name__ == "__main__":
    main()
