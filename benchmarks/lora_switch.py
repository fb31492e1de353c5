"""A different LoRA on every request vs no LoRA at all: the latency ratio.

Two demo LoRAs alternate request by request (each request activates its own adapter set on
the shared pipeline, under the pipeline's lock), against the same requests without LoRA;
the two kinds of round alternate in one process.

    python -m benchmarks.lora_switch [--requests 12] [--rounds 3] [--steps 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from benchmarks._common import emit, environment, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    env = environment(args.threads)

    from app.entrypoints.library import Atelier

    with tempfile.TemporaryDirectory() as data_dir:
        atelier = Atelier.open(data_dir=data_dir)
        atelier.init_demo()
        styles = [["demo-style-a:0.8"], ["demo-style-b:0.8"]]
        latencies: dict[str, list[float]] = {"no_lora": [], "lora_switch": []}

        def request(i: int, loras: list[str]) -> float:
            start = time.perf_counter()
            job = atelier.generate("一只猫在草地上", loras=loras, steps=args.steps, seed=i)
            assert job.status.value == "succeeded", job.error_message
            return time.perf_counter() - start

        for i in range(2):  # warm-up: the model and both LoRAs loaded once
            request(i, styles[i])
        for _ in range(args.rounds):
            latencies["no_lora"] += [request(i, []) for i in range(args.requests)]
            latencies["lora_switch"] += [request(i, styles[i % 2]) for i in range(args.requests)]
        atelier.close()

    detail = {"benchmark": "lora_switch", "requests": args.requests, "steps": args.steps, **env}
    detail.update({name: summary(values) for name, values in latencies.items()})
    base, switching = detail["no_lora"]["median_s"], detail["lora_switch"]["median_s"]
    emit(
        detail,
        {
            "no_lora_median_s": base,
            "lora_switch_median_s": switching,
            "latency_ratio": round(switching / base, 3),
            "target_max": 1.3,
        },
    )


if __name__ == "__main__":
    main()
