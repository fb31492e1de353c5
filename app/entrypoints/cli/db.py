"""``atelier db``: schema migrations."""

from __future__ import annotations

import click

from app.entrypoints.cli.common import open_atelier


@click.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.pass_context
def upgrade(ctx: click.Context) -> None:
    """Apply the migrations up to the newest revision (also done automatically at start-up)."""
    atelier = open_atelier(ctx)
    click.echo(f"database at the newest revision: {atelier.settings.resolved_database_url}")
