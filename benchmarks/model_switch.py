"""Switching between two base models: Atelier's pipeline cache vs reloading on every switch.

The Chinese SD WebUI reloads the whole pipeline on every model pick; Atelier keeps loaded
pipelines (least recently used evicted under a memory budget). Two demo-architecture models
are alternated ``--switches`` times per round, through the whole stack, in alternating rounds.
The baseline unloads every pipeline before each request, so each one loads from disk.

    python -m benchmarks.model_switch [--switches 6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks._common import emit, environment, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--switches", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    env = environment(args.threads)

    from app.adapters.diffusers.demo import build_demo_model as build_demo
    from app.entrypoints.library import Atelier

    with tempfile.TemporaryDirectory() as data_dir:
        atelier = Atelier.open(data_dir=data_dir)
        atelier.init_demo()
        atelier.add_model("other", build_demo(str(Path(data_dir) / "models" / "other"), 1))
        generator = atelier.container.generator()
        timings: dict[str, list[float]] = {"cached": [], "reload": []}

        def round_trip(reload: bool) -> float:
            start = time.perf_counter()
            for i in range(args.switches * 2):
                if reload:
                    generator.unload_all()
                job = atelier.generate("一只猫", model=("demo", "other")[i % 2], steps=args.steps, seed=i)
                assert job.status.value == "succeeded", job.error_message
            return (time.perf_counter() - start) / (args.switches * 2)

        round_trip(reload=False)  # warm-up: both models loaded once
        loads = {"cached": 0, "reload": 0}
        for _ in range(args.rounds):
            for name in ("cached", "reload"):
                if name == "cached":  # the reload round left one model: load both again, untimed
                    for model in ("demo", "other"):
                        atelier.generate("一只猫", model=model, steps=args.steps, seed=0)
                before = generator.loads
                timings[name].append(round_trip(reload=name == "reload"))
                loads[name] += generator.loads - before
        atelier.close()

    detail = {"benchmark": "model_switch", "switches": args.switches, "steps": args.steps, "loads": loads, **env}
    detail.update({name: summary(values) for name, values in timings.items()})
    cached, reload = detail["cached"]["median_s"], detail["reload"]["median_s"]
    emit(
        detail,
        {
            "cached_s_per_request": cached,
            "reload_s_per_request": reload,
            "speedup": round(reload / cached, 3),
            "loads_cached": loads["cached"],
            "loads_reload": loads["reload"],
            "target_min": 5.0,
        },
    )


if __name__ == "__main__":
    main()
