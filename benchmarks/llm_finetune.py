"""Teaching SmolLM2-135M-Instruct facts it cannot know with a LoRA, on this CPU.

1. The facts (``app/lab/finetune/facts.py``): 30 fictional companies, their founders and cities; 180 chat records
   (three phrasings per fact) and 120 rehearsal records (continents of countries, and capitals of countries whose
   capital the knowledge benchmark does not ask as a popular question: none of the capitals asked) to train on,
   and the same 60 facts asked in a phrasing no record uses to test on.
2. Accuracy before: the model answers the held-out questions greedily (an answer is right when it names the founder
   or the city), and the popular capitals questions of the knowledge benchmark (geonames, head of the distribution).
3. A LoRA on every projection of every block (``app/adapters/transformers/finetune.py``: loss on the assistant's
   tokens only), timed.
4. Accuracy after, through the serving path: the adapter applied per request (``NAME:ADAPTER``).

    python -m benchmarks.llm_finetune [--epochs 4] [--rank 16] [--learning-rate 2e-3] [--threads 2]

Last line: {"facts_acc_before", "facts_acc_after", "capitals_drop", "train_minutes"}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import emit, environment


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--companies", type=int, default=30)
    parser.add_argument("--phrasings", type=int, default=3, help="training questions per fact")
    parser.add_argument("--general", type=int, default=120, help="rehearsal records (continents; capitals not asked)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--capitals", type=int, default=60, help="popular capitals questions asked")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=None, help="where SmolLM2 is converted once (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    env = environment(args.threads)

    from app.adapters.transformers.finetune import FineTuneSettings, train
    from app.domain.chat import ChatMessage, Sampling
    from app.domain.models import ModelInfo, ModelKind
    from app.entrypoints.library import Atelier
    from app.lab.finetune.facts import write_facts
    from app.lab.knowledge.geonames import build_dataset, is_correct
    from app.lab.knowledge.geonames_world import ascii_fold

    with (
        tempfile.TemporaryDirectory() as scratch,
        Atelier.open(data_dir=args.data_dir or scratch, start_worker=False) as atelier,
    ):
        served = atelier.container.text_generator()
        base = str(Path(atelier.container.llm().model.name_or_path))
        facts_dir = Path(scratch) / "facts"
        write_facts(str(facts_dir), args.companies, args.seed, args.phrasings, args.general)
        records = [row["messages"] for row in _rows(facts_dir / "train.jsonl")]
        held_out = _rows(facts_dir / "held_out.jsonl")
        items, _ = build_dataset(args.seed)
        capitals = [i for i in items if i.relation == "capital" and not i.tail][: args.capitals]
        greedy = Sampling(max_tokens=24, temperature=0.0)

        def answer(question: str, adapter: ModelInfo | None) -> str:
            prompt = served.chat_prompt([ChatMessage("user", question)])
            return "".join(d.text for d in served.start(prompt, greedy, adapter=adapter))

        def facts_accuracy(adapter: ModelInfo | None) -> float:
            right = 0
            for row in held_out:
                text = ascii_fold(answer(row["question"], adapter))
                right += any(ascii_fold(a) in text for a in row["answers"])
            return right / len(held_out)

        answered: dict[bool, list[tuple[str, bool]]] = {}

        def capitals_accuracy(adapter: ModelInfo | None) -> float:
            answers = [answer(item.question, adapter) for item in capitals]
            answered[adapter is not None] = [(a, is_correct(a, i)) for a, i in zip(answers, capitals, strict=True)]
            return sum(right for _, right in answered[adapter is not None]) / len(capitals)

        before = {"facts": facts_accuracy(None), "capitals": capitals_accuracy(None)}
        settings = FineTuneSettings(
            epochs=args.epochs,
            learning_rate=args.learning_rate,
            batch_size=args.batch_size,
            lora_rank=args.rank,
            seed=args.seed,
        )
        losses: list[float] = []
        started = time.perf_counter()
        result = train(
            base,
            records,
            str(Path(scratch) / "adapter"),
            str(Path(scratch) / "work"),
            settings,
            progress=lambda step, total, loss, validation: losses.append(loss),
        )
        minutes = (time.perf_counter() - started) / 60
        adapter = ModelInfo(name="facts", path=result.out_dir, source=result.out_dir, kind=ModelKind.LLM_LORA)
        after = {"facts": facts_accuracy(adapter), "capitals": capitals_accuracy(adapter)}
        detail = {
            "benchmark": "llm_finetune",
            "model": served.name,
            **env,
            **vars(args),
            "records": len(records),
            "held_out": len(held_out),
            "capitals_asked": len(capitals),
            "steps": result.steps,
            "loss_first": round(losses[0], 4),
            "loss_last_epoch": round(result.train_loss, 4),
            "capitals_acc_before": round(before["capitals"], 3),
            "capitals_acc_after": round(after["capitals"], 3),
            "capitals_lost": [  # right before, wrong with the adapter: what the LoRA pulled them towards
                {"question": item.question, "before": a[0], "after": b[0]}
                for item, a, b in zip(capitals, answered[False], answered[True], strict=True)
                if a[1] and not b[1]
            ][:12],
        }
        headline = {
            "facts_acc_before": round(before["facts"], 3),
            "facts_acc_after": round(after["facts"], 3),
            "capitals_drop": round(before["capitals"] - after["capitals"], 3),
            "train_minutes": round(minutes, 2),
        }
        emit(detail, headline)
        return headline


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


if __name__ == "__main__":
    main()
