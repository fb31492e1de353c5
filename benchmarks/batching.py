"""Cross-request dynamic batching: 8 concurrent compatible jobs, batching on vs off.

Off runs them one at a time, as Diffusers-API and A1111 serve; on lets the executor gather
them into one pipeline call. Both go through the whole stack (use case, SQLite, PNG store,
executor) on the demo model, in alternating rounds in one process. Headline: throughput ratio.

    python -m benchmarks.batching [--jobs 8] [--size 64] [--steps 8] [--rounds 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from benchmarks._common import emit, environment, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--window", type=float, default=0.1, help="batch window in seconds (the server's default is 0)")
    args = parser.parse_args()
    env = environment(args.threads)

    from app.entrypoints.library import Atelier

    with tempfile.TemporaryDirectory() as data_dir:
        setups = {
            "off": Atelier.open(data_dir=data_dir, max_batch=1),
            "on": Atelier.open(data_dir=data_dir, max_batch=args.jobs, batch_window=args.window),
        }
        setups["off"].init_demo()
        timings: dict[str, list[float]] = {"off": [], "on": []}

        def burst(name: str, round_no: int) -> float:
            atelier = setups[name]
            start = time.perf_counter()
            jobs = [
                atelier.submit(
                    f"第{i}只猫在草地上", width=args.size, height=args.size, steps=args.steps, seed=round_no * 100 + i
                )
                for i in range(args.jobs)
            ]
            finished = [atelier.wait(job.id) for job in jobs]
            elapsed = time.perf_counter() - start
            assert all(job.status.value == "succeeded" for job in finished), [j.error_message for j in finished]
            return elapsed

        for name in setups:  # warm-up: model load, allocator
            burst(name, 99)
        for round_no in range(args.rounds):
            for name in ("off", "on"):
                timings[name].append(burst(name, round_no))
        for atelier in setups.values():
            atelier.close()

    detail = {"benchmark": "batching", "jobs": args.jobs, "size": args.size, "steps": args.steps, "window": args.window}
    detail.update(env)
    detail.update({name: summary(values) for name, values in timings.items()})
    off, on = detail["off"]["median_s"], detail["on"]["median_s"]
    emit(
        detail,
        {
            "jobs_per_s_off": round(args.jobs / off, 3),
            "jobs_per_s_on": round(args.jobs / on, 3),
            "throughput_ratio": round(off / on, 3),
            "target_min": 2.0,
        },
    )


if __name__ == "__main__":
    main()
