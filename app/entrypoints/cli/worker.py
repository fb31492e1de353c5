"""``atelier worker``: run jobs from the database's queue, here or as actors on a Ray cluster, without the API."""

from __future__ import annotations

import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from app.entrypoints.library import Atelier


@click.command()
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(1),
    help="Worker threads here, or worker actors on the cluster with --address  [default: ATELIER_WORKERS, else 1]",
)
@click.option("--max-batch", default=None, type=click.IntRange(1), help="Jobs per batched pipeline call.")
@click.option(
    "--address",
    default=None,
    help="Join a Ray cluster (its head's host:port, or auto) and run the workers there as actors, one per GPU "
    "(--gpus-per-worker) or per CPU slot (needs the ray extra).",
)
@click.option("--gpus-per-worker", default=None, type=click.FloatRange(0), help="GPUs each actor reserves.")
@click.option("--metrics-port", default=None, type=click.IntRange(0, 65535), help="Serve /metrics on this port.")
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
@click.pass_context
def worker(
    ctx: click.Context,
    workers: int | None,
    max_batch: int | None,
    address: str | None,
    gpus_per_worker: float | None,
    metrics_port: int | None,
    log_level: str,
) -> None:
    """Run generation jobs from the database's queue until stopped (Ctrl-C or SIGTERM), with no HTTP API.

    Any number of workers on any hosts share one database (PostgreSQL for more than one host): each claims the
    queued jobs of the models it holds first, runs up to --max-batch of one kind as one batch, and takes over the
    jobs of workers gone silent. Images go to the data dir, which the API servers must share. `atelier serve
    --no-workers` takes the requests."""
    from app.composition import configure_logging
    from app.entrypoints.library import Atelier

    obj = ctx.find_root().obj or {}
    values: dict[str, Any] = {"workers": workers, "max_batch": max_batch}
    if address is not None:
        values |= {"executor": "ray", "ray_address": address, "ray_gpus_per_worker": gpus_per_worker}
    else:
        values["executor"] = "queue"
    atelier = Atelier.open(database_url=obj.get("database_url"), data_dir=obj.get("data_dir"), **values)
    settings = atelier.settings
    configure_logging(settings.log_format, log_level)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server = _serve_metrics(atelier, metrics_port) if metrics_port is not None else None
    where = f"as {settings.workers} actors on the Ray cluster at {address}" if address else "here"
    click.echo(
        f"Atelier worker {atelier.worker_id}: {settings.workers} workers {where}, claiming jobs from "
        f"{_database(settings)}; stop with Ctrl-C",
        err=True,
    )
    try:
        stop.wait()
    finally:
        click.echo("stopping: running jobs finish first", err=True)
        if server is not None:
            server.shutdown()
        atelier.close()


def _database(settings: Any) -> str:
    from app.entrypoints.cli.serve import database_label

    return database_label(settings)


def _serve_metrics(atelier: Atelier, port: int) -> ThreadingHTTPServer:
    """``GET /metrics`` of this worker process (jobs it ran, batch sizes, models it holds) on ``port``."""

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body, content_type = atelier.metrics()
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((atelier.settings.host, port), Metrics)
    threading.Thread(target=server.serve_forever, name="atelier-metrics", daemon=True).start()
    return server
