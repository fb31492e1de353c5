"""``atelier ask`` and ``atelier knowledge``: long-tail-aware question answering (GECE-gated RAG)."""

from __future__ import annotations

from dataclasses import asdict

import click

from app.domain.knowledge import DETECTOR_FEATURES, GATES, KnowledgeQuery, is_document_id
from app.entrypoints.cli.common import AliasOption, echo_json, echo_table, open_atelier, progress_bar, quiet_option

RETRIEVAL = click.Choice(["auto", "always", "never"])


def _print_query(query: KnowledgeQuery) -> None:
    click.echo(query.answer or "(no answer)")
    how = "from retrieved passages" if query.decision.value == "retrieved" else "from the model alone"
    estimate = query.signals.gece_estimate
    if query.signals.gate == "token_prob" and query.signals.calibration_id is None:
        lowest = query.signals.min_token_prob
        judged = (
            f"; no calibration of this model: lowest token probability {lowest or 0.0:.2f} vs "
            f"{query.signals.threshold or 0.0:.2f} (`atelier knowledge calibrate` for the detector)"
        )
    elif query.signals.aborted_at is not None:
        judged = f"; the model's own answer was abandoned after {query.signals.aborted_at} token(s) as long-tail"
    elif query.signals.gate == "token_prob":
        lowest = query.signals.min_token_prob
        judged = (
            f"; lowest token probability {lowest or 0.0:.2f} vs the calibrated {query.signals.threshold or 0.0:.2f}"
        )
    elif estimate is not None:
        judged = f"; long-tail estimate {estimate:.2f} vs {query.signals.threshold:.2f}"
    elif query.signals.early_estimate is not None:
        judged = f"; judged long-tail before answering ({query.signals.early_estimate:.2f})"
    else:
        judged = ""
    click.echo(f"-- {how}{judged}; {query.timings.get('total', 0.0):.2f} s; id {query.id}")
    for p in query.passages:
        click.echo(f"   [{p.score:.3f}] {p.source}")


@click.command()
@click.argument("question")
@click.option("--top-k", default=5, show_default=True, help="Passages to retrieve when retrieving.")
@click.option(
    "--retrieval", type=RETRIEVAL, default="auto", show_default=True, help="auto: only for long-tail questions."
)
@click.option("--json", "as_json", is_flag=True, help="Print the whole query (signals, passages, timings) as JSON.")
@click.pass_context
def ask(ctx: click.Context, question: str, top_k: int, retrieval: str, as_json: bool) -> None:
    """Answer QUESTION with the language model, retrieving passages only for long-tail knowledge.

    \b
    atelier knowledge make-dataset geo && atelier knowledge ingest geo/corpus
    atelier knowledge calibrate geo/questions.jsonl --split calibration --limit 200
    atelier ask "What is the capital of Tuvalu?"
    """
    query = open_atelier(ctx, start_worker=False).knowledge.ask(question, top_k=top_k, retrieval=retrieval)  # type: ignore[arg-type]
    if as_json:
        echo_json(query)
    else:
        _print_query(query)


@click.group()
def knowledge() -> None:
    """Knowledge queries: ingest, list and delete documents, calibrate the long-tail detector, evaluate; list and
    show the answered queries. `atelier ask` answers a question."""


@knowledge.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@quiet_option
@click.pass_context
def ingest(ctx: click.Context, paths: tuple[str, ...], as_json: bool, quiet: bool) -> None:
    """Chunk, embed and index PATHS: PDF, HTML, DOCX, Markdown, text or JSONL files, or folders of them (read
    recursively). Re-ingesting a file replaces its chunks; the progress bar shows documents per second. Files above
    ATELIER_KNOWLEDGE_MAX_FILE_MB (20) and PDFs above ATELIER_KNOWLEDGE_MAX_PAGES (500) are refused, and then
    nothing is stored."""
    with progress_bar("ingesting", quiet or as_json, "documents") as progress:
        report = open_atelier(ctx, start_worker=False).knowledge.ingest(list(paths), progress)
    if as_json:
        echo_json(report)
    else:
        click.echo(f"{report.documents} documents, {report.chunks} chunks ({report.replaced} old chunks replaced)")


@knowledge.command()
@click.argument("dataset")
@click.option("--split", default=None, help="Only lines whose 'split' field has this value.")
@click.option("--limit", default=None, type=int, help="At most this many questions.")
@click.option(
    "--features",
    default=",".join(DETECTOR_FEATURES),
    show_default=True,
    help="Comma-separated query-time signals the detector uses.",
)
@click.option("--threshold", default=0.5, show_default=True, help="Detector probability above which to retrieve.")
@click.option(
    "--early-precision",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=None,
    help="Retrieve before answering only above the cut that was this precise on DATASET "
    "(default: above --threshold, like the detector that reads the answer).",
)
@click.option(
    "--gate",
    type=click.Choice(["auto", *GATES]),
    default="auto",
    show_default=True,
    help="What decides after the plain answer: auto chooses by 5-fold cross-validation on DATASET.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the calibration statistics as JSON.")
@quiet_option
@click.pass_context
def calibrate(
    ctx: click.Context,
    dataset: str,
    split: str | None,
    limit: int | None,
    features: str,
    threshold: float,
    early_precision: float | None,
    gate: str,
    as_json: bool,
    quiet: bool,
) -> None:
    """Compute GECE on the labelled questions of DATASET (jsonl: question, answers) and fit the detector.

    Each question costs one answer and two backward passes of the language model (about a second with SmolLM2 on
    two cores: 300 questions in about five minutes). Besides the detector, it fits the question-state probe, the
    early decision's cut and the token probability below which an answer is abandoned while it is generated, and
    chooses the gate that decides after the plain answer (detector, token_prob or combined) by cross-validation.
    """
    names = [f.strip() for f in features.split(",") if f.strip()]
    with progress_bar("calibrating", quiet or as_json, "questions") as progress:
        calibration, _ = open_atelier(ctx, start_worker=False).knowledge.calibrate(
            dataset,
            split=split,
            limit=limit,
            features=names,
            decision_threshold=threshold,
            progress=progress,
            early_precision=early_precision,
            gate=gate,
        )
    summary = {
        "id": calibration.id,
        "model": calibration.model,
        "n": calibration.n,
        "gate": calibration.gate,
        "gate_threshold": calibration.gate_threshold,
        "threshold_gece": calibration.threshold_gece,
        "features": calibration.features,
        "stats": calibration.stats,
    }
    if as_json:
        echo_json(summary)
        return
    click.echo(f"calibrated {calibration.model} on {calibration.n} questions; gate: {calibration.gate}")
    for key, value in calibration.stats.items():
        click.echo(f"  {key}: {value:.4g}")


@knowledge.command("eval")
@click.argument("dataset")
@click.option("--split", default=None, help="Only lines whose 'split' field has this value.")
@click.option("--limit", default=None, type=int, help="At most this many questions.")
@click.option(
    "--retrieval",
    "--mode",  # the first spelling, kept working
    "modes",
    cls=AliasOption,
    hidden_names=["--mode"],
    type=RETRIEVAL,
    multiple=True,
    help="A retrieval mode to compare, as in `atelier ask --retrieval` (repeatable; default: all three).",
)
@click.option("--top-k", default=5, show_default=True, help="Passages to retrieve when retrieving.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@quiet_option
@click.pass_context
def evaluate(
    ctx: click.Context,
    dataset: str,
    split: str | None,
    limit: int | None,
    modes: tuple[str, ...],
    top_k: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Accuracy, retrieval rate and latency of each retrieval mode on DATASET (nothing is stored)."""
    chosen = modes or ("auto", "always", "never")
    with progress_bar("evaluating", quiet or as_json, "queries") as progress:
        results = open_atelier(ctx, start_worker=False).knowledge.evaluate(
            dataset,
            split=split,
            limit=limit,
            modes=chosen,  # type: ignore[arg-type]
            top_k=top_k,
            progress=progress,
        )
    if as_json:
        echo_json({r.mode: asdict(r) for r in results})
        return
    for r in results:
        click.echo(
            f"{r.mode:<7} accuracy {r.accuracy:.3f}  retrieval {r.retrieval_rate:.2f}  {r.mean_latency_s:.3f} s/query"
        )


@knowledge.command("make-dataset")
@click.argument("out_dir")
@click.option("--seed", default=0, show_default=True, help="Chooses phrasings and the calibration/test split.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def make_dataset(out_dir: str, seed: int, as_json: bool) -> None:
    """Write a long-tail QA set from geonames (OUT_DIR/questions.jsonl) and its corpus (OUT_DIR/corpus/)."""
    from app.lab.knowledge.geonames import write_dataset

    counts = write_dataset(out_dir, seed)
    if as_json:
        echo_json(counts)
    else:
        click.echo(f"{counts['items']} questions and {counts['passages']} passages in {out_dir}")


@knowledge.command("list")
@click.option("--limit", default=20, show_default=True)
@click.option("--offset", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_queries(ctx: click.Context, limit: int, offset: int, as_json: bool) -> None:
    """Answered queries, newest first, under a header naming the columns (--json for scripts)."""
    page = open_atelier(ctx, start_worker=False).knowledge.queries(limit=limit, offset=offset)
    if as_json:
        echo_json(page)
        return
    echo_table(
        ("ID", "DECISION", "SECONDS", "QUESTION"),
        ([q.id, q.decision.value, f"{q.timings.get('total', 0.0):.2f}", q.question[:50]] for q in page.items),
        right=[2],
    )


@knowledge.command("documents")
@click.option("--source", default=None, help="Only the document of this source.")
@click.option("--limit", default=100, show_default=True)
@click.option("--offset", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def documents(ctx: click.Context, source: str | None, limit: int, offset: int, as_json: bool) -> None:
    """Ingested documents, by collection and source, with their ids, chunks and characters (--json for scripts)."""
    page = open_atelier(ctx, start_worker=False).knowledge.documents(limit=limit, offset=offset, source=source)
    if as_json:
        echo_json(page)
        return
    echo_table(
        ("ID", "CHUNKS", "CHARS", "COLLECTION", "SOURCE"),
        ([d.id, str(d.chunks), str(d.characters), d.collection, d.source] for d in page.items),
        right=[1, 2],
    )
    if page.total > offset + len(page.items):
        click.echo(f"({page.total} in all; --offset {offset + len(page.items)} for more)")


@knowledge.command("delete")
@click.argument("document")
@click.option("--json", "as_json", is_flag=True, help="Print the deleted document as JSON.")
@click.pass_context
def delete(ctx: click.Context, document: str, as_json: bool) -> None:
    """Delete DOCUMENT (an id from `atelier knowledge documents`, or a source as ingested) from both the vector and
    the keyword index."""
    library = open_atelier(ctx, start_worker=False).knowledge
    found = library.delete(document) if is_document_id(document) else library.delete(source=document)
    if as_json:
        echo_json(found)
    else:
        click.echo(f"deleted {found.source} ({found.chunks} chunks, {found.id})")


@knowledge.command("show")
@click.argument("query_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def show(ctx: click.Context, query_id: str, as_json: bool) -> None:
    """One answered query with its signals and passages."""
    query = open_atelier(ctx, start_worker=False).knowledge.query(query_id)
    if as_json:
        echo_json(query)
    else:
        click.echo(query.question)
        _print_query(query)
