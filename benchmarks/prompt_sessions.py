"""Prompt sessions on held-out demo-world instructions: how often the chosen prompt's image shows the
instruction applied and the rest kept, per rewriter.

    python -m benchmarks.prompt_sessions [--instructions 100] [--k 4] [--sft-steps 3000]
        [--sft-records 20000] [--sft-held-out 200] [--steps 20]
        [--rl-steps 150] [--rl-ablations] [--rl-text-reward] [--headroom 6] [--sampling 32]
        [--methods concat,rule,sft,sft_best_of_n,sft_rl,sft_rl_best_of_n]
        [--threads 2] [--seed 0] [--out-dir DIR]

Held-out records: InstructPE-format records over scenes of the demo world's held-out split (colour,
shape and position combinations the demo model and the SFT rewriter never saw), each a beautified
source prompt and an instruction. For each method a fresh session starts from the source prompt and
takes one turn with the instruction on the shipped ``demo`` model (one seed per record, the same for
every method). Methods: ``concat`` (prompt + instruction), ``rule`` (the demo world's rule rewriter),
``sft`` (the trained rewriter's greedy rewrite, one candidate), ``sft_best_of_n`` (``--k`` candidates
ranked by the rewards), ``sft_rl`` and ``sft_rl_best_of_n`` (the same after ``--rl-steps`` PPO iterations
of ``train-rl``, trained after the preference model so its reward is the full combined reward).
Missing rewriters are trained into the data dir first; existing ones are reused.

``--rl-ablations`` also trains RL without ADM, without the integrity state value, and without both (same
seed and steps, separate folders) and reports each one's held-out figures from its training summary
(greedy rewrites of held-out records: combined reward, integrity, exact share) beside the full method's.

``--rl-text-reward`` also trains RL with the render-free reward (``train-rl --reward text``: the integrity of
the rewrite's own text, exact and free of render noise) with the same settings, and reports its held-out
figures (then text-level: ``exact`` is the share of greedy rewrites that state the asked scene exactly).

``--sampling N`` reads what RL's rollouts can find (``rl.sampling_reach``, text only, no renders): on the
``--rl-held-out`` records of RL's held-out check, the share the greedy rewrite states exactly, and on the
ones it gets wrong, how often N samples of the policy (temperature 1) state the asked scene exactly; for the
SFT rewriter, and the RL one when trained.

``--headroom N`` measures what any rewriter can reach on this image model: the same records rendered from
prompts that are already right (the beautified target, and N other phrasings of the asked scene); see
``_headroom``.

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

METHODS = ("concat", "rule", "sft", "sft_best_of_n", "sft_rl", "sft_rl_best_of_n")
HEADLINE = ("concat", "rule", "sft", "sft_rl", "sft_rl_best_of_n")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instructions", type=int, default=100)
    parser.add_argument("--k", type=int, default=4, help="candidates of the best-of-n method")
    parser.add_argument("--sft-steps", type=int, default=3000)
    parser.add_argument("--sft-records", type=int, default=20000, help="generated training records")
    parser.add_argument("--sft-held-out", type=int, default=200, help="records of the SFT exact-match check")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps per image")
    parser.add_argument("--rl-steps", type=int, default=150, help="PPO iterations of the RL rewriter")
    parser.add_argument("--rl-held-out", type=int, default=128, help="records of the RL held-out check")
    parser.add_argument("--rl-ablations", action="store_true", help="also train RL without ADM / integrity value")
    parser.add_argument(
        "--rl-text-reward", action="store_true", help="also train RL with the render-free text-integrity reward"
    )
    parser.add_argument(
        "--headroom", type=int, default=0, help="also render N other phrasings of each right answer (0: off)"
    )
    parser.add_argument(
        "--sampling", type=int, default=0, help="also read N policy samples per held-out record the greedy misses"
    )
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)
    env = environment(args.threads)
    methods = [m for m in args.methods.split(",") if m]

    from app.adapters.rewards.integrity import expected_scene
    from app.adapters.storage.artifacts import rl_dir, sft_dir
    from app.demo_world.integrity import integrity
    from app.entrypoints.library import Atelier
    from app.lab.prompts.rl import sampling_reach
    from app.lab.prompts.runs import train_preference, train_rl, train_sft
    from app.lab.prompts.sft import generate_records

    records = generate_records(args.instructions, seed=args.seed + 1000, split="heldout")
    seeds = [random.Random(args.seed + i).randrange(2**31) for i in range(len(records))]
    results: dict[str, dict[str, Any]] = {}
    training: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(args.out_dir or tmp) / "data")
        with Atelier.open(data_dir=data) as base:
            base.init_demo()
            if any(m.startswith("sft") for m in methods) and not (sft_dir(data) / "config.json").is_file():
                started = time.perf_counter()
                training["sft"] = train_sft(
                    base.container,
                    steps=args.sft_steps,
                    records=args.sft_records,
                    held_out=args.sft_held_out,
                    seed=args.seed,
                )
                training["sft"]["wall_minutes"] = round((time.perf_counter() - started) / 60, 2)
                print({"trained": "sft", **{k: v for k, v in training["sft"].items() if k != "config"}}, flush=True)
            training["preference"] = train_preference(base.container, simulate="styled", turns=200, seed=args.seed)
            rl = {"steps": args.rl_steps, "held_out": args.rl_held_out, "render_steps": args.steps, "seed": args.seed}
            if any(m.startswith("sft_rl") for m in methods) and not (rl_dir(data) / "config.json").is_file():
                training["sft_rl"] = _short(train_rl(base.container, **rl))
                print({"trained": "sft_rl", **training["sft_rl"]}, flush=True)
            variants: dict[str, dict[str, Any]] = {}
            if args.rl_ablations:
                variants["no_adm"] = {"adm": False}
                variants["plain_value"] = {"state_value": "plain"}
                variants["no_adm_plain_value"] = {"adm": False, "state_value": "plain"}
            if args.rl_text_reward:
                variants["text_reward"] = {"reward": "text"}
            for name, change in variants.items():
                folder = str(Path(data) / "models" / f"rewriter-rl-{name}")
                training[f"ablation_{name}"] = _short(train_rl(base.container, out_dir=folder, **rl, **change))
                print({"trained": name, **training[f"ablation_{name}"]}, flush=True)
        for method in methods:
            rewriter = method.removesuffix("_best_of_n")
            k = args.k if method.endswith("best_of_n") else 1
            started = time.perf_counter()
            rows = []
            with Atelier.open(data_dir=data, prompt_rewriter=rewriter) as atelier:
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
        headroom = _headroom(data, records, seeds, args.steps, args.headroom, args.seed) if args.headroom else None
        if headroom:
            print({"headroom": headroom}, flush=True)
        reach: dict[str, Any] = {}
        if args.sampling:
            held = generate_records(args.rl_held_out, args.seed + 2, split="heldout")  # RL's held-out check
            for name, folder in (("sft", sft_dir(data)), ("sft_rl", rl_dir(data))):
                if (folder / "config.json").is_file():
                    reach[name] = sampling_reach(folder, held, args.sampling, args.seed)
                    print({"sampling_reach": name, **reach[name]}, flush=True)
    headline: dict[str, Any] = {}
    for metric in ("success_rate", "aesthetic", "preference", "drift"):
        headline[metric] = {m: results.get(m, {}).get(metric) for m in HEADLINE}
    rate = headline["success_rate"]
    gain = {
        base: None if rate["sft_rl"] is None or rate[base] is None else round(rate["sft_rl"] - rate[base], 4)
        for base in ("concat", "sft")
    }
    headline["sft_rl_gain_over_concat"] = gain["concat"]
    headline["sft_rl_gain_over_sft"] = gain["sft"]
    detail = {
        "environment": env,
        "instructions": len(records),
        "k": args.k,
        "steps": args.steps,
        "training": training,
        "results": results,
        "headroom": headroom,
        "sampling_reach": reach or None,
    }
    emit(detail, headline)
    return headline


def _headroom(data: str, records: list[Any], seeds: list[int], steps: int, phrasings: int, seed: int) -> dict[str, Any]:
    """What a rewriter can reach on this image model: the success rate of prompts that are already right.

    Per record, with its seed and the methods' render settings (a turn with rewriting off): the record's
    beautified target (the canonical right answer), the same without "一个", and ``phrasings`` random
    phrasings of the asked scene by the demo world's caption grammar. ``any`` is the share of records where at
    least one of them is drawn exactly: the ceiling of a rewriter that could pick the best phrasing per seed."""
    from app.adapters.rewards.integrity import expected_scene
    from app.demo_world.integrity import integrity
    from app.demo_world.scenes import caption
    from app.entrypoints.library import Atelier

    rows: list[dict[str, bool]] = []
    with Atelier.open(data_dir=data, prompt_rewriter="rule") as atelier:
        for i, (record, record_seed) in enumerate(zip(records, seeds, strict=True)):
            target = record.beautified_target_prompt
            asked = expected_scene(record.beautified_source_prompt, record.instruction, target)
            if asked is None:
                continue
            rng = random.Random(seed * 7919 + i)
            variants = {"target": target, "without_yige": target.replace("一个", "")}
            variants.update({f"phrasing_{m}": caption(asked, rng, "zh") for m in range(phrasings)})
            row = {}
            for name, prompt in variants.items():
                session = atelier.prompts.start(prompt)
                turn = atelier.prompts.turn(
                    session.id, record.instruction, n=1, k=1, seed=record_seed, steps=steps, rewrite=False
                )
                image = turn.candidates[0].image_id
                assert image is not None
                row[name] = integrity(asked, atelier.read_scene(image).seen).exact
            rows.append(row)
    if not rows:
        return {}
    out: dict[str, Any] = {name: round(sum(r[name] for r in rows) / len(rows), 4) for name in rows[0]}
    out["phrasing_mean"] = round(statistics.mean(out[f"phrasing_{m}"] for m in range(phrasings)), 4)
    out["any"] = round(sum(any(r.values()) for r in rows) / len(rows), 4)
    out["records"] = len(rows)
    return out


def _short(summary: dict[str, Any]) -> dict[str, Any]:
    """A training summary without its per-iteration history and config."""
    return {k: v for k, v in summary.items() if k not in ("history", "config")}


if __name__ == "__main__":
    main()
