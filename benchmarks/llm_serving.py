"""Serving SmolLM2-135M-Instruct to chat clients (CPU): the batched decoder against transformers' own generate.

1. Overhead: one request at a time, greedy, through the serving path (chat template, the decoding thread, deltas)
   against ``model.generate`` with the same prompt ids and settings; both produce the same tokens (checked).
   Ratio of the medians (target ≤ 1.10).
2. Concurrency: 8 different requests sent at once against the same 8 one after another, both through the serving
   path: generated tokens per second, and the ratio (target ≥ 3); time to first token of the concurrent requests.
3. An adapter per request (``NAME:ADAPTER``): one request at a time with a rank-8 LoRA on the attention's q and v
   projections against the same request without it (``adapter_overhead_ratio`` in the detail line).

    python -m benchmarks.llm_serving [--tokens 48] [--rounds 5] [--threads 2]

Last line: {"overhead_ratio", "concurrency_throughput_ratio", "ttft_p50_s", "tokens_per_s_8"}.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks._common import emit, environment

QUESTIONS = [
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain what a neural network is.",
    "List three fruits that are red.",
    "How do airplanes fly?",
    "What is the boiling point of water?",
    "Describe a cat in two sentences.",
    "Why is the sky blue?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=48, help="max_tokens of every request")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=None, help="where SmolLM2 is converted once (default: a temp dir)")
    args = parser.parse_args()
    env = environment(args.threads)

    import torch

    from app.adapters.transformers.tiny import build_tiny_lora
    from app.domain.chat import ChatMessage, Sampling
    from app.domain.models import ModelInfo, ModelKind
    from app.entrypoints.library import Atelier

    with (
        tempfile.TemporaryDirectory() as scratch,
        Atelier.open(data_dir=args.data_dir or scratch, start_worker=False) as atelier,
    ):
        served = atelier.container.text_generator()
        lm = atelier.container.llm()
        greedy = Sampling(max_tokens=args.tokens, temperature=0.0)

        def prompt(question: str) -> list[int]:
            return served.chat_prompt([ChatMessage("user", question)])

        def serve(question: str, ttft: list[float] | None = None) -> int:
            started = time.perf_counter()
            produced = 0
            for delta in served.start(prompt(question), greedy):
                if ttft is not None and not ttft and delta.text:
                    ttft.append(time.perf_counter() - started)
                produced = delta.completion_tokens or produced
            return produced

        def raw(question: str) -> int:
            ids = torch.tensor([prompt(question)])
            with lm.lock, torch.inference_mode():
                out = lm.model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=args.tokens,
                    do_sample=False,
                    eos_token_id=sorted(lm.stop_ids),
                    pad_token_id=lm.tokenizer.pad_token_id or lm.tokenizer.eos_token_id,
                )
            tokens = out[0, ids.shape[1] :].tolist()
            return len([t for t in tokens if t not in lm.stop_ids])

        adapter_dir = str(Path(scratch) / "lora")
        build_tiny_lora(str(Path(lm.model.name_or_path)), adapter_dir, rank=8)
        adapter = ModelInfo(name="bench", path=adapter_dir, source=adapter_dir, kind=ModelKind.LLM_LORA)

        def adapted(question: str) -> int:
            produced = 0
            for delta in served.start(prompt(question), greedy, adapter=adapter):
                produced = delta.completion_tokens or produced
            return produced

        serve(QUESTIONS[1])  # warm-up: the decoding thread, the allocator
        raw(QUESTIONS[1])
        single: dict[str, list[float]] = {"raw": [], "served": []}
        counts: dict[str, int] = {}
        for _ in range(args.rounds):
            for name, call in (("raw", raw), ("served", serve)):
                started = time.perf_counter()
                counts[name] = call(QUESTIONS[1])  # a poem: max_tokens long
                single[name].append(time.perf_counter() - started)
        overhead = statistics.median(single["served"]) / statistics.median(single["raw"])
        adapted(QUESTIONS[1])  # loads it
        with_adapter: dict[str, list[float]] = {"plain": [], "adapter": []}
        for _ in range(args.rounds):
            for name, call in (("plain", serve), ("adapter", adapted)):
                started = time.perf_counter()
                call(QUESTIONS[1])
                with_adapter[name].append(time.perf_counter() - started)
        adapter_ratio = statistics.median(with_adapter["adapter"]) / statistics.median(with_adapter["plain"])

        sequential_s, concurrent_s, ttfts = [], [], []
        tokens_seq = tokens_conc = 0
        for _ in range(args.rounds):
            started = time.perf_counter()
            tokens_seq = sum(serve(q) for q in QUESTIONS)
            sequential_s.append(time.perf_counter() - started)
            firsts: list[list[float]] = [[] for _ in QUESTIONS]
            produced = [0] * len(QUESTIONS)

            def one(i: int, firsts: list[list[float]] = firsts, produced: list[int] = produced) -> None:
                produced[i] = serve(QUESTIONS[i], firsts[i])

            threads = [threading.Thread(target=one, args=(i,)) for i in range(len(QUESTIONS))]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            concurrent_s.append(time.perf_counter() - started)
            tokens_conc = sum(produced)
            ttfts += [f[0] for f in firsts if f]
        rate_seq = tokens_seq / statistics.median(sequential_s)
        rate_conc = tokens_conc / statistics.median(concurrent_s)
        ordered = sorted(ttfts)
        detail: dict[str, Any] = {
            "benchmark": "llm_serving",
            "model": served.name,
            **env,
            **vars(args),
            "single_raw_s": round(statistics.median(single["raw"]), 4),
            "single_served_s": round(statistics.median(single["served"]), 4),
            "single_tokens": counts,
            "sequential_tokens_per_s": round(rate_seq, 2),
            "tokens_8": tokens_conc,
            "ttft_p95_s": round(ordered[max(0, int(0.95 * len(ordered)) - 1)], 4) if ordered else None,
            "batch_sizes_seen": sorted(set(served.batches)),
            "adapter_overhead_ratio": round(adapter_ratio, 3),
        }
        emit(
            detail,
            {
                "overhead_ratio": round(overhead, 3),
                "concurrency_throughput_ratio": round(rate_conc / rate_seq, 2),
                "ttft_p50_s": round(statistics.median(ordered), 4) if ordered else None,
                "tokens_per_s_8": round(rate_conc, 2),
            },
        )


if __name__ == "__main__":
    main()
