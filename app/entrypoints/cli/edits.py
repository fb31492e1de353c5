"""``atelier edits``: sequential edits of the served language model's facts (DAFNet, MEND, FT-L, GRACE)."""

from __future__ import annotations

from typing import Any

import click

from app.domain.edits import DEFAULT_EDITOR, EDITORS, EditRequest
from app.domain.errors import InvalidParameters
from app.entrypoints.cli.common import echo_json, echo_table, open_atelier, progress_bar, quiet_option

EDITOR = click.Choice(EDITORS)


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _line(edit: EditRequest) -> str:
    s = edit.scores
    return (
        f"{edit.id}  #{edit.position:<3} {edit.status.value:<11} {edit.editor:<6} rel {_score(s.reliability)} "
        f"gen {_score(s.generality)} loc {_score(s.locality)}  {edit.spec.prompt[:40]} -> {edit.spec.target[:30]}"
    )


EDIT_COLUMNS = ("ID", "#", "STATUS", "EDITOR", "REL", "GEN", "LOC", "PROMPT -> TARGET")


def _row(edit: EditRequest) -> list[str]:
    s = edit.scores
    return [
        edit.id,
        str(edit.position),
        edit.status.value,
        edit.editor,
        _score(s.reliability),
        _score(s.generality),
        _score(s.locality),
        f"{edit.spec.prompt[:40]} -> {edit.spec.target[:30]}",
    ]


def _probe(text: str) -> tuple[str, str]:
    prompt, sep, answer = text.partition("=>")
    if not sep or not prompt.strip() or not answer.strip():
        raise InvalidParameters(f"--locality takes 'PROMPT=>ANSWER', got {text!r}.", field="locality")
    return prompt.strip(), answer.strip()


@click.group()
def edits() -> None:
    """Edit the served language model's facts one after another; roll back to any point.

    \b
    atelier edits train --editor dafnet            # once per model: meta-train the editor
    atelier edits apply --prompt "What is the capital of Peru?" --target Cusco
    atelier ask "What is the capital of Peru?"      # answers with the edited model
    atelier edits list
    atelier edits rollback 0                         # back to the original model
    """


@edits.command()
@click.option("--prompt", required=True, help="The question, as the model is asked it.")
@click.option("--target", required=True, help="The new answer.")
@click.option("--subject", default="", help="The subject the fact is about (must occur in the prompt).")
@click.option("--rephrase", "rephrases", multiple=True, help="Another phrasing of the prompt (repeatable).")
@click.option("--locality", "locality", multiple=True, help="'PROMPT=>ANSWER' that must not change (repeatable).")
@click.option("--editor", type=EDITOR, default=DEFAULT_EDITOR, show_default=True, help="The editing method.")
@click.option("--json", "as_json", is_flag=True, help="Print the edit as JSON.")
@click.pass_context
def apply(
    ctx: click.Context,
    prompt: str,
    target: str,
    subject: str,
    rephrases: tuple[str, ...],
    locality: tuple[str, ...],
    editor: str,
    as_json: bool,
) -> None:
    """Apply the next edit on top of the active ones and record it in the edit log."""
    probes = [_probe(p) for p in locality]
    edit = open_atelier(ctx).edits.apply(
        prompt, target, editor=editor, subject=subject, rephrases=rephrases, locality=probes
    )
    if as_json:
        echo_json(edit)
    else:
        click.echo(_line(edit))
        click.echo(f"-- applied as edit #{edit.position} in {edit.seconds * 1000:.0f} ms")


@edits.command(name="list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--offset", default=0, show_default=True, type=click.IntRange(0))
@click.option("--all-models", is_flag=True, help="Edits of every language model, not only the served one.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_edits(ctx: click.Context, limit: int, offset: int, all_models: bool, as_json: bool) -> None:
    """The edit log, newest first (applied and rolled back), under a header naming the columns
    (REL, GEN, LOC: reliability, generality, locality; --json for scripts)."""
    items, total = open_atelier(ctx).edits.log(limit, offset, all_models)
    if as_json:
        echo_json({"items": items, "total": total, "limit": limit, "offset": offset})
        return
    echo_table(EDIT_COLUMNS, (_row(edit) for edit in items), right=[1])
    click.echo(f"-- {len(items)} of {total}")


@edits.command()
@click.argument("edit_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def show(ctx: click.Context, edit_id: str, as_json: bool) -> None:
    """One edit with its prompts and scores."""
    edit = open_atelier(ctx).edits.get(edit_id)
    if as_json:
        echo_json(edit)
    else:
        click.echo(_line(edit))
        for r in edit.spec.rephrases:
            click.echo(f"   rephrase: {r}")
        for p in edit.spec.locality:
            click.echo(f"   locality: {p.prompt} => {p.answer}")


@edits.command()
@click.argument("to", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the rolled-back edits as JSON.")
@click.pass_context
def rollback(ctx: click.Context, to: int, as_json: bool) -> None:
    """Keep the first TO active edits (0: the original model); the later ones are rolled back."""
    undone = open_atelier(ctx).edits.rollback(to)
    if as_json:
        echo_json(undone)
        return
    for edit in undone:
        click.echo(_line(edit))
    click.echo(f"-- rolled back {len(undone)} edits; {to} active")


@edits.command(name="eval")
@click.option("--editor", type=EDITOR, default="dafnet", show_default=True)
@click.option("--dataset", default=None, help="ZsRE- or CounterFact-shaped JSON [default: the built-in test split].")
@click.option("-T", "--sequence-length", default=10, show_default=True, type=click.IntRange(1), help="Edits per chunk.")
@click.option("--limit", default=None, type=click.IntRange(1), help="Use at most this many edits.")
@click.option("--chunks", default=None, type=click.IntRange(1), help="Score at most this many chunks.")
@click.option("--fluency", default=0, show_default=True, type=click.IntRange(0), help="Fluency samples per chunk.")
@click.option("--seed", default=0, show_default=True, help="Shuffle seed.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@quiet_option
@click.pass_context
def evaluate(
    ctx: click.Context,
    editor: str,
    dataset: str | None,
    sequence_length: int,
    limit: int | None,
    chunks: int | None,
    fluency: int,
    seed: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Sequential-editing evaluation: chunks of T edits applied one by one, all scored after the last."""
    atelier = open_atelier(ctx)
    specs = atelier.edits.load_dataset(dataset, limit) if dataset else _builtin_test(limit)
    with progress_bar(f"{editor} T={sequence_length}", quiet or as_json, "chunks") as progress:
        report = atelier.edits.evaluate(
            editor, specs, sequence_length, seed=seed, max_chunks=chunks, fluency_samples=fluency, progress=progress
        )
    if as_json:
        echo_json(report)
        return
    s = report.scores
    click.echo(
        f"{editor} T={sequence_length}: rel {_score(s.reliability)} gen {_score(s.generality)} "
        f"loc {_score(s.locality)} fluency {_score(s.fluency)} over {s.n} edits in {report.chunks} chunks; "
        f"{report.ms_per_edit:.0f} ms per edit\n"
        f"  locality on confident positions {_score(s.locality_confident)}, "
        f"on unrelated prompts {_score(s.locality_unrelated)}"
    )


def _builtin_test(limit: int | None) -> list[Any]:
    from app.lab.edits.dafset import build_edits

    specs = [r.to_spec() for rs in build_edits(0).values() for r in rs if r.split == "test"]
    return specs[:limit] if limit else specs


@edits.command()
@click.option("--editor", type=click.Choice(["dafnet", "mend"]), default="dafnet", show_default=True)
@click.option("--steps", default=None, type=click.IntRange(1), help="Training steps  [default: 1500]")
@click.option("--max-sequence", default=None, type=click.IntRange(1), help="Curriculum cap on edits per step.")
@click.option("--blocks", default=None, type=click.IntRange(1), help="Edited decoder blocks (the last ones).")
@click.option("--start-sequence", default=None, type=click.IntRange(1), help="The curriculum's first cap  [default: 1]")
@click.option("--loc-weight", default=None, type=click.FloatRange(0), help="Weight of the locality KL  [default: 0.2]")
@click.option(
    "--sequence-sampling",
    default=None,
    type=click.Choice(["uniform", "log-uniform"]),
    help="How the edits per step are drawn from 1..cap; log-uniform trains short sequences more  [default: uniform]",
)
@click.option(
    "--extra-cities",
    default=None,
    type=click.IntRange(0),
    help="Add this many country-of-city edits (cities the benchmark never asks about) to the training split.",
)
@click.option(
    "--init-from",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Warm start: a trained checkpoint folder whose networks this new run starts from.",
)
@click.option("--limit", default=None, type=click.IntRange(1), help="Train on at most this many edits.")
@click.option("--work", default=None, help="Checkpoint folder  [default: <data dir>/training/edits-EDITOR-MODEL]")
@click.option("--restart", is_flag=True, help="Discard the checkpoint and start over.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@quiet_option
@click.pass_context
def train(
    ctx: click.Context,
    editor: str,
    steps: int | None,
    max_sequence: int | None,
    start_sequence: int | None,
    blocks: int | None,
    loc_weight: float | None,
    sequence_sampling: str | None,
    extra_cities: int | None,
    init_from: str | None,
    limit: int | None,
    work: str | None,
    restart: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Meta-train DAFNet (or MEND) for the served model on the built-in DAFSet-style training split.

    Resumable: started again with the same options, it continues from its last checkpoint; with a larger
    --steps (or another --max-sequence) it extends the run from there. --init-from starts a new run
    from trained networks (for example with more data or another --loc-weight); use a fresh --work
    folder (or --restart) for it."""
    overrides = {
        "steps": steps,
        "max_sequence": max_sequence,
        "start_sequence": start_sequence,
        "blocks": blocks,
        "loc_weight": loc_weight,
        "sequence_sampling": sequence_sampling,
        "extra_cities": extra_cities,
    }
    with progress_bar(f"training {editor}", quiet or as_json, "steps") as progress:
        from app.lab.edits.training_run import train_served_editor

        summary = train_served_editor(
            open_atelier(ctx).container,
            editor,
            work_dir=work,
            restart=restart,
            progress=progress,
            limit=limit,
            init_from=init_from,
            **{k: v for k, v in overrides.items() if v is not None},
        )
    if as_json:
        echo_json(summary)
    else:
        click.echo(
            f"{editor}: {summary['steps']} steps in {summary['train_minutes']} min "
            f"(curriculum up to {summary['curriculum_reached']} edits per step) -> {summary['checkpoint']}"
        )


@edits.command(name="make-dataset")
@click.argument("out_dir")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def make_dataset(out_dir: str, seed: int, as_json: bool) -> None:
    """Write the DAFSet-style counterfactual edits (popular, long-tail, robust) as ZsRE-shaped JSON."""
    from app.lab.edits.dafset import write_dafset

    counts = write_dafset(out_dir, seed)
    if as_json:
        echo_json(counts)
    else:
        click.echo(f"wrote {out_dir}: {counts}")
