"""``atelier jobs``: the job queue from the command line."""

from __future__ import annotations

import click

from app.domain.jobs import JobStatus
from app.entrypoints.cli.common import JOB_COLUMNS, echo_json, echo_table, job_dict, job_line, job_row, open_atelier


@click.group()
def jobs() -> None:
    """List, show, cancel and delete generation jobs (of every process using this database)."""


@jobs.command("list")
@click.option(
    "--status", type=click.Choice([s.value for s in JobStatus]), default=None, help="Only jobs in this status."
)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--offset", default=0, show_default=True, type=click.IntRange(0))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_jobs(ctx: click.Context, status: str | None, limit: int, offset: int, as_json: bool) -> None:
    """Newest jobs first, under a header naming the columns (--json for scripts)."""
    atelier = open_atelier(ctx)
    page = atelier.jobs(status=JobStatus(status) if status else None, limit=limit, offset=offset)
    if as_json:
        echo_json({"items": [job_dict(j) for j in page.items], "total": page.total, "limit": limit, "offset": offset})
        return
    echo_table(JOB_COLUMNS, (job_row(job) for job in page.items), right=[2])
    click.echo(f"{len(page.items)} of {page.total} jobs", err=True)


@jobs.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def show(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """One job with its parameters and images."""
    atelier = open_atelier(ctx)
    job = atelier.job(job_id)
    data = job_dict(job, atelier)
    if as_json:
        echo_json(data)
        return
    click.echo(job_line(job))
    for key, value in data["params"].items():
        click.echo(f"  {key}: {value}")
    if job.error_code:
        click.echo(f"  error: {job.error_code}: {job.error_message}")
    for image in data["images"]:
        click.echo(f"  image {image['id']}: {image['path']}")


@jobs.command("cancel")
@click.argument("job_id")
@click.pass_context
def cancel(ctx: click.Context, job_id: str) -> None:
    """Cancel a queued job, or stop a running one at its next step (also in a server process)."""
    job = open_atelier(ctx).cancel(job_id)
    click.echo(f"job {job.id}: {'cancelled' if job.status is JobStatus.CANCELLED else 'cancel requested'}")


@jobs.command("delete")
@click.argument("job_ids", nargs=-1, required=True)
@click.pass_context
def delete(ctx: click.Context, job_ids: tuple[str, ...]) -> None:
    """Delete queued or finished jobs and their images (cancel a running one first)."""
    atelier = open_atelier(ctx)
    for job_id in job_ids:
        atelier.delete_job(job_id)
        click.echo(f"job {job_id}: deleted")


@jobs.command("prune")
@click.option(
    "--older-than",
    "days",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="DAYS",
    help="Delete the jobs that finished more than DAYS days ago (default: ATELIER_JOB_RETENTION_DAYS).",
)
@click.pass_context
def prune(ctx: click.Context, days: float | None) -> None:
    """Delete finished jobs by age, with their images; prints how many."""
    atelier = open_atelier(ctx)
    if days is None and atelier.settings.job_retention_days <= 0:
        raise click.UsageError("Give --older-than DAYS, or set ATELIER_JOB_RETENTION_DAYS.")
    removed = atelier.prune_jobs(days)
    click.echo(f"{removed} finished jobs deleted")
