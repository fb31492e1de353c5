"""``atelier llm``: fine-tuning a language model, as a training job."""

from __future__ import annotations

import time
from pathlib import Path

import click

from app.domain.errors import InvalidParameters
from app.domain.training import DEFAULTS, TrainingJob, TrainingKind, TrainingSpec
from app.entrypoints.cli.common import Progress, echo_json, echo_table, open_atelier, quiet_option, to_plain
from app.entrypoints.library import Atelier

_DEFAULT = DEFAULTS[TrainingKind.LLM_FINETUNE]


@click.group()
def llm() -> None:
    """Fine-tune the language model on your chat records, and follow the training jobs."""


@llm.command("finetune")
@click.argument("data", type=click.Path(exists=True, dir_okay=False))
@click.option("--base", default=None, help="The language model to fine-tune  [default: the served one]")
@click.option("--name", "result_name", required=True, help="The name of the result: chat requests use BASE:NAME.")
@click.option(
    "--validation", default=None, type=click.Path(exists=True, dir_okay=False), help="Chat records to validate on."
)
@click.option("--epochs", default=_DEFAULT.epochs, show_default=True, type=int)
@click.option("--learning-rate", default=_DEFAULT.learning_rate, show_default=True, type=float)
@click.option("--batch-size", default=_DEFAULT.batch_size, show_default=True, type=int)
@click.option("--lora-rank", default=_DEFAULT.lora_rank, show_default=True, type=int, help="0: fine-tune every weight.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--no-wait", is_flag=True, help="Queue the job and print its id (a worker process runs it).")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON (no progress output).")
@quiet_option
@click.pass_context
def finetune(
    ctx: click.Context,
    data: str,
    base: str | None,
    result_name: str,
    validation: str | None,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    lora_rank: int,
    seed: int,
    no_wait: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Fine-tune a language model on DATA, chat records in OpenAI's JSONL format
    ({"messages": [{"role": "user", ...}, {"role": "assistant", ...}]} per line; the loss is on the
    assistant's messages). A LoRA by default, registered as NAME and served as BASE:NAME by the chat API.

    The job is stored and runs in this process (or in a running server's, whichever takes it first); an
    interrupted run resumes from its last checkpoint when a worker starts again. Progress goes to stderr.
    """
    atelier = open_atelier(ctx, start_worker=not no_wait)
    training_id = atelier.training.upload(Path(data).read_bytes(), Path(data).name).id
    validation_id = None
    if validation:
        validation_id = atelier.training.upload(Path(validation).read_bytes(), Path(validation).name).id
    spec = TrainingSpec(
        kind=TrainingKind.LLM_FINETUNE,
        base_model=base or atelier.container.complete_text().listing()[0].id,
        result_name=result_name,
        training_file=training_id,
        validation_file=validation_id,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        lora_rank=lora_rank,
        seed=seed,
    )
    job = atelier.training.submit(spec)
    if not no_wait:
        job = follow(atelier, job, quiet or as_json, "fine-tuning")
    if as_json:
        echo_json(to_plain(job))
    elif no_wait:
        click.echo(job.id)
    elif job.status.value == "succeeded":
        click.echo(f"fine-tuned {job.spec.base_model} in {job.step} steps (loss {job.loss:.4f}): {job.result_model}")
    fail_unless_succeeded(job)


def fail_unless_succeeded(job: TrainingJob) -> None:
    if job.status.finished and job.status.value != "succeeded":
        message = job.error_message or f"the job was {job.status.value}"
        raise click.ClickException(f"training job {job.id} {job.status.value}: {message}")


def follow(atelier: Atelier, job: TrainingJob, quiet: bool, label: str) -> TrainingJob:
    """Show a training job's progress (steps and loss) on stderr until it ends; Ctrl-C cancels it."""
    bar = Progress(label, "steps", quiet, leave=True)
    try:
        while not job.status.finished:
            time.sleep(0.5)
            job = atelier.training.job(job.id)
            if job.total_steps:
                bar.update(job.step, job.total_steps, {"loss": job.loss} if job.loss is not None else None)
        bar.finish()
    except KeyboardInterrupt:
        atelier.training.cancel(job.id)
        raise
    finally:
        bar.close()
    return job


@llm.command("jobs")
@click.option("--limit", default=20, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def jobs(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Training jobs, newest first, under a header naming the columns (--json for scripts)."""
    page = open_atelier(ctx).training.jobs(limit=limit)
    if as_json:
        echo_json([to_plain(job) for job in page.items])
        return
    rows = [
        [j.id, j.spec.kind.value, j.status.value, f"{j.step}/{j.total_steps or '?'}", _loss(j), j.result_model or "-"]
        for j in page.items
    ]
    echo_table(("ID", "KIND", "STATUS", "STEP", "LOSS", "RESULT"), rows)


def _loss(job: TrainingJob) -> str:
    return f"{job.loss:.4f}" if job.loss is not None else "-"


@llm.command("cancel")
@click.argument("job_id")
@click.pass_context
def cancel(ctx: click.Context, job_id: str) -> None:
    """Cancel a training job: a queued one at once, a running one after its current step."""
    job = open_atelier(ctx).training.cancel(job_id)
    click.echo(f"{job.id} {job.status.value}{' (stops after its current step)' if not job.status.finished else ''}")


@llm.command("make-facts")
@click.argument("out_dir", default="facts")
@click.option("--companies", default=30, show_default=True, type=int)
@click.option("--phrasings", default=3, show_default=True, type=click.IntRange(1, 3), help="Questions per fact.")
@click.option(
    "--general",
    default=120,
    show_default=True,
    type=int,
    help="Rehearsal records: continents of countries, capitals of countries the benchmark does not ask.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def make_facts(out_dir: str, companies: int, phrasings: int, general: int, seed: int, as_json: bool) -> None:
    """Write facts no model can know (fictional companies, founders, cities): train.jsonl (chat records, with
    rehearsal records of facts the model knows), validation.jsonl and held_out.jsonl (questions in a phrasing no
    record uses), to measure fine-tuning."""
    if companies < 1 or general < 0:
        raise InvalidParameters("--companies must be at least 1 and --general at least 0.", field="companies")
    from app.lab.finetune.facts import write_facts

    made = write_facts(out_dir, companies, seed, phrasings, general)
    if as_json:
        echo_json(made)
    else:
        click.echo(f"{made['train']} training records, {made['held_out']} held-out questions in {made['out_dir']}")
