"""``atelier serve``: the HTTP API under uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from app.settings import Settings


@click.command()
@click.option("--host", default=None, help="Bind address  [default: ATELIER_HOST, else 127.0.0.1]")
@click.option("--port", default=None, type=click.IntRange(0, 65535), help="Port  [default: ATELIER_PORT, else 8000]")
@click.option("--workers", default=None, type=int, help="Generation worker threads (default 1, or ATELIER_WORKERS).")
@click.option(
    "--no-workers",
    is_flag=True,
    help="Run no jobs here: only queue them in the database, for `atelier worker` processes to run.",
)
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
@click.pass_context
def serve(
    ctx: click.Context, host: str | None, port: int | None, workers: int | None, no_workers: bool, log_level: str
) -> None:
    """Serve the HTTP API and the studio page; jobs left behind by a previous run are resumed first.

    Before serving it prints the address and the data dir in use; the studio is at /, the OpenAPI
    docs at /docs. --host and --port override ATELIER_HOST and ATELIER_PORT. Several servers may share one
    PostgreSQL database behind a load balancer; with --no-workers they only take requests."""
    import uvicorn

    from app.composition import configure_logging
    from app.entrypoints.http.app import create_app
    from app.entrypoints.library import Atelier

    obj = ctx.find_root().obj or {}
    atelier = Atelier.open(
        database_url=obj.get("database_url"),
        data_dir=obj.get("data_dir"),
        workers=workers,
        recover=True,
        start_worker=not no_workers,
        serving=True,
        # Jobs wait in the database's queue for the processes that claim them; this one keeps no queue of its own.
        **({"executor": "queue"} if no_workers else {}),
    )
    settings = atelier.settings
    bind_host = settings.host if host is None else host
    bind_port = settings.port if port is None else port
    app = create_app(atelier, close_on_shutdown=True)
    click.echo(
        f"Atelier serving {serving_url(bind_host, bind_port)} — data dir {Path(settings.data_dir).resolve()} "
        f"({database_label(settings)}); the studio at /, API docs at /docs",
        err=True,
    )
    configure_logging(settings.log_format, log_level)
    # uvicorn logs through the root handler; with JSON logs each request's line comes from Atelier (with its id)
    access_log = settings.log_format == "plain"
    uvicorn.run(app, host=bind_host, port=bind_port, log_level=log_level, log_config=None, access_log=access_log)


def serving_url(host: str, port: int) -> str:
    """The URL to open for a bind address; for every interface, also the one that works on this machine."""
    if host in ("", "0.0.0.0", "::"):
        return f"http://{host or '0.0.0.0'}:{port} (every interface; http://127.0.0.1:{port} on this machine)"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def database_label(settings: Settings) -> str:
    """``SQLite`` for the data dir's own database; otherwise the database URL without its password."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        own = Path(settings.data_dir).resolve() / "atelier.db"
        return "SQLite" if url.database and Path(url.database).resolve() == own else f"SQLite at {url.database}"
    return url.render_as_string(hide_password=True)
