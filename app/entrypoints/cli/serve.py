"""``atelier serve``: the HTTP API under uvicorn."""

from __future__ import annotations

import click


@click.command()
@click.option("--host", default=None, help="Bind address (default 127.0.0.1, or ATELIER_HOST).")
@click.option("--port", default=None, type=int, help="Port (default 8000, or ATELIER_PORT).")
@click.option("--workers", default=None, type=int, help="Generation worker threads (default 1, or ATELIER_WORKERS).")
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, workers: int | None, log_level: str) -> None:
    """Serve the HTTP API; jobs left behind by a previous run are resumed first. OpenAPI docs at /docs."""
    import uvicorn

    from app.entrypoints.http.app import create_app
    from app.entrypoints.library import Atelier

    obj = ctx.find_root().obj or {}
    atelier = Atelier.open(
        database_url=obj.get("database_url"), data_dir=obj.get("data_dir"), workers=workers, recover=True
    )
    settings = atelier.settings
    app = create_app(atelier, close_on_shutdown=True)
    click.echo(f"Atelier on http://{host or settings.host}:{port or settings.port} (docs at /docs)", err=True)
    uvicorn.run(app, host=host or settings.host, port=port or settings.port, log_level=log_level)
