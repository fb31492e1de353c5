"""Prompt sessions on held-out demo-world instructions: how often the chosen prompt's image shows the
instruction applied and the rest kept, per rewriter.

    python -m benchmarks.prompt_sessions [--instructions 100] [--k 4] [--sft-steps 3000]
        [--sft-records 20000] [--sft-held-out 200] [--steps 20]
        [--methods concat,rule,sft,sft_best_of_n] [--threads 2] [--seed 0] [--out-dir DIR]

Held-out records: InstructPE-format records over scenes of the demo world's held-out split (colour,
shape and position combinations the demo model and the SFT rewriter never saw), each a beautified
source prompt and an instruction. For each method a fresh session starts from the source prompt and
takes one turn with the instruction on the shipped ``demo`` model (one seed per record, the same for
every method). Methods: ``concat`` (prompt + instruction), ``rule`` (the demo world's rule rewriter),
``sft`` (the trained rewriter's greedy rewrite, one candidate), ``sft_best_of_n`` (``--k`` candidates
ranked by the rewards). SFT + RL is not built yet: its keys are null.

Metrics of the chosen candidate: ``success_rate`` the share whose image the checker reads as exactly
the scene asked for (the source scene with the instruction applied: every attribute and nothing more);
``aesthetic`` and ``preference`` its rewards (the preference model is fitted first on simulated
"styled" users); ``drift`` from the source prompt.

Last line: {"success_rate": {"concat", "rule", "sft", "sft_rl", "sft_rl_best_of_n"}, "aesthetic": {...},
"preference": {...}, "drift": {...}, "sft_rl_gain_over_concat": x, "sft_rl_gain_over_sft": y}.

For a quick check of the code path: ``--instructions 3 --k 2 --sft-steps 5 --sft-records 200
--sft-held-out 2 --steps 2``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import emit, environment

METHODS = ("concat", "rule", "sft", "sft_best_of_n")
HEADLINE = ("concat", "rule", "sft", "sft_rl", "sft_rl_best_of_n")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instructions", type=int, default=100)
    parser.add_argument("--k", type=int, default=4, help="candidates of the best-of-n method")
    parser.add_argument("--sft-steps", type=int, default=3000)
    parser.add_argument("--sft-records", type=int, default=20000, help="generated training records")
    parser.add_argument("--sft-held-out", type=int, default=200, help="records of the SFT exact-match check")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps per image")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)
    env = environment(args.threads)
    methods = [m for m in args.methods.split(",") if m]

    from app.adapters.rewards.integrity import expected_scene
    from app.adapters.rewriting.sft import generate_records, sft_dir
    from app.domain.scenes import integrity
    from app.entrypoints.library import Atelier

    records = generate_records(args.instructions, seed=args.seed + 1000, split="heldout")
    seeds = [random.Random(args.seed + i).randrange(2**31) for i in range(len(records))]
    results: dict[str, dict[str, Any]] = {}
    training: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(args.out_dir or tmp) / "data")
        with Atelier.open(data_dir=data, start_worker=False) as base:
            base.init_demo()
            if any(m.startswith("sft") for m in methods) and not (sft_dir(data) / "config.json").is_file():
                started = time.perf_counter()
                training["sft"] = base.prompts.train_sft(
                    steps=args.sft_steps, records=args.sft_records, held_out=args.sft_held_out, seed=args.seed
                )
                training["sft"]["wall_minutes"] = round((time.perf_counter() - started) / 60, 2)
                print({"trained": "sft", **{k: v for k, v in training["sft"].items() if k != "config"}}, flush=True)
            training["preference"] = base.prompts.train_preference(simulate="styled", turns=200, seed=args.seed)
        for method in methods:
            rewriter = "sft" if method.startswith("sft") else method
            k = args.k if method.endswith("best_of_n") else 1
            started = time.perf_counter()
            rows = []
            with Atelier.open(data_dir=data, start_worker=False, prompt_rewriter=rewriter) as atelier:
                for record, seed in zip(records, seeds, strict=True):
                    session = atelier.prompts.start(record.beautified_source_prompt)
                    turn = atelier.prompts.turn(
                        session.id, record.instruction, n=max(k, 1), k=k, seed=seed, steps=args.steps
                    )
                    chosen = turn.candidates[0]
                    asked = expected_scene(record.beautified_source_prompt, record.instruction, chosen.prompt)
                    assert chosen.image_id is not None
                    seen = atelier.read_scene(chosen.image_id).seen
                    exact = asked is not None and integrity(asked, seen).exact
                    rows.append((exact, chosen.scores, chosen.drift))
            results[method] = {
                "success_rate": round(sum(r[0] for r in rows) / len(rows), 4),
                "aesthetic": round(statistics.mean(r[1].get("aesthetic", 0.0) for r in rows), 4),
                "preference": round(statistics.mean(r[1].get("preference", 0.0) for r in rows), 4),
                "drift": round(statistics.mean(r[2] for r in rows), 4),
                "seconds": round(time.perf_counter() - started, 1),
            }
            print({"method": method, **results[method]}, flush=True)
    headline: dict[str, Any] = {}
    for metric in ("success_rate", "aesthetic", "preference", "drift"):
        headline[metric] = {m: results.get(m, {}).get(metric) for m in HEADLINE}
    headline["sft_rl_gain_over_concat"] = None  # SFT + RL is not built yet
    headline["sft_rl_gain_over_sft"] = None
    detail = {
        "environment": env,
        "instructions": len(records),
        "k": args.k,
        "steps": args.steps,
        "training": training,
        "results": results,
    }
    emit(detail, headline)
    return headline


if __name__ == "__main__":
    main()
