"""Sequential model editing: DAFNet against MEND, FT-L and GRACE under the protocol DAFNet and WISE use.

    python -m benchmarks.editing [--llm smollm2|tiny|FOLDER] [--editors dafnet,mend,ft,grace]
        [--T 1,10,100] [--edits 100] [--chunks 0|N,N,..] [--train-steps 1500] [--train-limit 0]
        [--max-sequence 100] [--start-sequence 1] [--loc-weight 0.2] [--sequence-sampling uniform]
        [--extra-cities 0] [--init-from DIR]
        [--ft-lr LR] [--ft-eps EPS] [--fluency 2] [--threads 2] [--seed 0] [--out-dir DIR]

A fresh Atelier (SQLite; a temporary data dir unless ``--out-dir``) serves the language model. DAFNet
and MEND are meta-trained first through ``atelier.edits.train`` on the geonames DAFSet-style training
split (skipped when ``--out-dir`` already holds their checkpoints for the same ``--train-steps``,
``--max-sequence``, ``--loc-weight`` and ``--extra-cities``; with other steps or cap the run kept there
is extended or resumed). ``--extra-cities N`` adds N country-of-city edits on cities the test never
asks about to the training split; ``--init-from DIR`` starts training from exported networks (a new
run: ``--train-steps`` counts its own steps; ``--start-sequence`` sets its curriculum's first N).
The test edits are a seeded sample of ``--edits`` records of the test split (popular, long-tail and
robust subsets; subjects never seen in training). For each T and each editor (``atelier.edits.evaluate``):
shuffle (seed 0), cut into chunks of T (``--chunks`` caps their number, 0: all), apply each chunk's
edits one by one, score all T after the last, restore the model.

Metrics: ``rel``/``gen`` teacher-forced top-1 accuracy of the new target after the edit prompts /
rephrasings, ``loc`` share of the locality probes' answer tokens whose argmax did not change,
``loc_confident`` the same over the positions where the unedited model's top token led by at least
2 nats, ``loc_unrelated`` the share on fixed prompts unrelated to any edit (ZsRE's kind of locality),
``fluency`` ROME's weighted 2/3-gram entropy of greedy generations from ``--fluency`` edit prompts per
chunk, ``ms_per_edit`` the mean wall time of one ``apply``. The detail line also has, per editor, the
edit state's bytes per edit (the memory that grows with the sequence) and the bytes a frozen second
copy of the model would take (the authors' way to take the editing signal; Atelier switches the
deltas off instead).

Last line: {"T1"|"T10"|"T100"|...: {"dafnet"|"mend"|"ft"|"grace": {"rel", "gen", "loc", "fluency",
"ms_per_edit"}}}.

For a quick check of the code path: ``--llm tiny --T 1,2 --edits 4 --train-steps 5 --train-limit 12``.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import emit, environment

EDITORS = ("dafnet", "mend", "ft", "grace")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm", default="smollm2", help="smollm2, tiny (a random 2-layer Llama) or a folder")
    parser.add_argument("--editors", default=",".join(EDITORS))
    parser.add_argument("--T", default="1,10,100", help="comma-separated sequence lengths")
    parser.add_argument("--edits", type=int, default=100, help="test edits drawn (at least the largest T)")
    parser.add_argument(
        "--chunks",
        default="0",
        help="at most this many chunks per T (0: all); one number or one per T, comma-separated",
    )
    parser.add_argument("--train-steps", type=int, default=1500)
    parser.add_argument("--train-limit", type=int, default=0, help="train on at most this many edits (0: all)")
    parser.add_argument("--blocks", type=int, default=3, help="edited decoder blocks (DAFNet, MEND)")
    parser.add_argument("--max-sequence", type=int, default=100, help="cap of the training curriculum's N")
    parser.add_argument("--start-sequence", type=int, default=1, help="the curriculum's first N")
    parser.add_argument("--loc-weight", type=float, default=0.2, help="weight of the locality KL in meta-training")
    parser.add_argument(
        "--sequence-sampling",
        default="uniform",
        choices=["uniform", "log-uniform"],
        help="how meta-training draws the edits per step from 1..cap",
    )
    parser.add_argument(
        "--extra-cities", type=int, default=0, help="extra country_of_city training edits (0: the DAFSet split only)"
    )
    parser.add_argument(
        "--init-from", default=None, help="warm start: an exported checkpoint folder whose networks start training"
    )
    parser.add_argument("--ft-lr", type=float, default=None, help="FT-L learning rate (default: the editor's)")
    parser.add_argument("--ft-eps", type=float, default=None, help="FT-L L-inf bound (default: the editor's)")
    parser.add_argument("--fluency", type=int, default=2, help="fluency generations per chunk")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)
    env = environment(args.threads)
    editors = [e for e in args.editors.split(",") if e]
    lengths = [int(t) for t in args.T.split(",") if t]
    if args.edits < max(lengths):
        parser.error("--edits must be at least the largest T")
    chunks = [int(c) for c in args.chunks.split(",") if c]
    if len(chunks) == 1:
        chunks *= len(lengths)
    if len(chunks) != len(lengths):
        parser.error("--chunks needs one number or one per T")
    ft_options = {k: v for k, v in (("lr", args.ft_lr), ("norm_constraint", args.ft_eps)) if v is not None}

    from app.entrypoints.library import Atelier
    from app.lab.edits.dafset import build_edits

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out_dir or tmp)
        llm = args.llm
        if llm == "tiny":
            from app.adapters.transformers.tiny import build_tiny_llama

            llm = build_tiny_llama(str(root / "tiny-llama"))
        atelier = Atelier.open(data_dir=str(root / "data"), llm=llm, embedder="hashing", start_worker=False)
        try:
            test = [r.to_spec() for rs in build_edits(args.seed).values() for r in rs if r.split == "test"]
            specs = random.Random(args.seed).sample(test, args.edits)
            training: dict[str, Any] = {}
            for editor in ("dafnet", "mend"):
                if editor in editors:
                    training[editor] = _train(atelier, editor, args)
            if ft_options:
                atelier.container.editor_pool().settings["ft"] = ft_options
            results: dict[str, dict[str, Any]] = {}
            memory: dict[str, Any] = {}
            for t, max_chunks in zip(lengths, chunks, strict=True):
                results[f"T{t}"] = {}
                for editor in editors:
                    started = time.perf_counter()
                    report = atelier.edits.evaluate(
                        editor, specs, t, seed=0, max_chunks=max_chunks or None, fluency_samples=args.fluency
                    )
                    s = report.scores
                    results[f"T{t}"][editor] = {
                        "rel": _round(s.reliability),
                        "gen": _round(s.generality),
                        "loc": _round(s.locality),
                        "loc_confident": _round(s.locality_confident),
                        "loc_unrelated": _round(s.locality_unrelated),
                        "fluency": _round(s.fluency),
                        "ms_per_edit": round(report.ms_per_edit, 1),
                        "edits": s.n,
                        "chunks": report.chunks,
                        "seconds": round(time.perf_counter() - started, 1),
                    }
                    print({"T": t, "editor": editor, **results[f"T{t}"][editor]}, flush=True)
            for editor in editors:
                memory[editor] = _state_bytes(atelier, editor, specs[: min(10, len(specs))])
            model = atelier.container.llm().model
            copy_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        finally:
            atelier.close()
    detail = {
        "environment": env,
        "llm": args.llm,
        "test_edits": args.edits,
        "chunks_per_T": dict(zip(lengths, chunks, strict=True)),
        "ft_options": ft_options or "editor defaults",
        "training": training,
        "results": results,
        "state_bytes_per_edit": memory,
        "frozen_copy_bytes_saved": copy_bytes,
    }
    emit(detail, results)
    return results


def _train(atelier: Any, editor: str, args: argparse.Namespace) -> dict[str, Any]:
    from app.adapters.editing.dafnet import CONFIG_FILE, checkpoint_dir
    from app.adapters.editing.pool import model_slug, networks_dir
    from app.lab.edits.training_run import train_served_editor

    folder = checkpoint_dir(
        str(networks_dir(atelier.settings.data_dir)), model_slug(atelier.container.llm().name), editor
    )
    if (folder / CONFIG_FILE).is_file():
        exported = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        trained = exported.get("training", {})
        asked = {"max_sequence": args.max_sequence, "loc_weight": args.loc_weight, "extra_cities": args.extra_cities}
        same = all(trained.get(k, 0) == v for k, v in asked.items())
        same = same and trained.get("sequence_sampling", "uniform") == args.sequence_sampling
        if exported.get("steps") == args.train_steps and same:
            return {"reused": str(folder)}
        # otherwise the run in the work folder is extended (or resumed) to the asked steps and cap
    started = time.perf_counter()
    summary: dict[str, Any] = train_served_editor(
        atelier.container,
        editor,
        steps=args.train_steps,
        blocks=args.blocks,
        limit=args.train_limit or None,
        seed=args.seed,
        max_sequence=args.max_sequence,
        start_sequence=args.start_sequence,
        loc_weight=args.loc_weight,
        sequence_sampling=args.sequence_sampling,
        extra_cities=args.extra_cities,
        init_from=args.init_from,
    )
    summary["wall_minutes"] = round((time.perf_counter() - started) / 60, 2)
    print({"trained": editor, **{k: v for k, v in summary.items() if k != "last"}}, flush=True)
    return summary


def _state_bytes(atelier: Any, editor: str, specs: list[Any]) -> float:
    """Bytes of edit state (the per-edit records) per applied edit, over a few edits."""
    instance = atelier.container.editor_pool().editor(editor)
    for spec in specs:
        instance.apply(spec)
    size = sum(t.numel() * t.element_size() for r in instance.records for t in r.values())
    instance.rollback(0)
    return round(size / max(len(specs), 1))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


if __name__ == "__main__":
    main()
