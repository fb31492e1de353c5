"""``atelier cluster``: the processes that run jobs on this database, and the queue they serve."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from app.entrypoints.cli.common import echo_json, echo_table, open_atelier


@click.group()
def cluster() -> None:
    """The processes running jobs on this database, and the queue."""


@cluster.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Live workers (heard from within three heartbeats: ATELIER_WORKER_HEARTBEAT), their worker threads and
    the models in their memory; then the queued jobs and the oldest one's wait, per model."""
    atelier = open_atelier(ctx)
    found = atelier.cluster()
    now = datetime.now(UTC)
    workers = [
        {
            "id": w.id,
            "host": w.host,
            "pid": w.pid,
            "threads": w.threads,
            "models": list(w.models),
            "started_at": w.started_at.isoformat(),
            "seen_seconds_ago": round((now - w.heartbeat_at).total_seconds(), 1),
        }
        for w in found["workers"]
    ]
    queue = [
        {"model": q.model, "queued": q.queued, "oldest_wait_seconds": round((now - q.oldest).total_seconds(), 1)}
        for q in found["queue"]
    ]
    if as_json:
        echo_json({"workers": workers, "queue": queue})
        return
    rows = [
        [
            w["id"],
            w["host"],
            str(w["pid"]),
            str(w["threads"]),
            ",".join(w["models"]) or "-",
            f"{w['seen_seconds_ago']}s",
        ]
        for w in workers
    ]
    echo_table(("WORKER", "HOST", "PID", "THREADS", "MODELS", "SEEN"), rows)
    click.echo(f"{len(workers)} live workers", err=True)
    echo_table(
        ("MODEL", "QUEUED", "OLDEST WAIT"),
        [[q["model"], str(q["queued"]), f"{q['oldest_wait_seconds']}s"] for q in queue],
    )
