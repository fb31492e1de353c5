"""``atelier``: the root group. Subcommands are imported only when they run, so
``atelier --help`` starts fast and never imports torch."""

from __future__ import annotations

import importlib
import os
from typing import Any

import click

from app import __version__
from app.domain import errors as e

# One table: error class -> exit code. Bad input of any kind exits 2, like Click's own usage errors.
EXIT_CODES: list[tuple[type[e.AtelierError], int]] = [
    (e.InvalidParameters, 2),
    (e.NotFound, 2),
    (e.Conflict, 2),
    (e.Unauthorized, 2),
    (e.BackendUnavailable, 3),
    (e.AtelierError, 1),
]

COMMANDS = {
    "serve": ("app.entrypoints.cli.serve", "serve", "Run the HTTP API (and the job workers)."),
    "generate": ("app.entrypoints.cli.generate", "generate", "Generate images from a prompt and wait for them."),
    "jobs": ("app.entrypoints.cli.jobs", "jobs", "List, show and cancel generation jobs."),
    "models": ("app.entrypoints.cli.models", "models", "List, register and build models."),
    "scenes": ("app.entrypoints.cli.scenes", "scenes", "The demo world: sample captions, read images back."),
    "db": ("app.entrypoints.cli.db", "db", "Database schema commands."),
    "chat": ("app.entrypoints.cli.chat", "chat", "Rewrite a prompt over several turns (prompt sessions)."),
    "prompts": ("app.entrypoints.cli.prompts", "prompts", "Prompt sessions: list, train-preference."),
    "ask": ("app.entrypoints.cli.knowledge", "ask", "Answer a question, retrieving only for long-tail knowledge."),
    "edits": (
        "app.entrypoints.cli.edits",
        "edits",
        "Model edits: apply, list, show, rollback, eval, train, make-dataset.",
    ),
    "knowledge": (
        "app.entrypoints.cli.knowledge",
        "knowledge",
        "Knowledge queries: ingest, calibrate, eval, make-dataset, list, show.",
    ),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except e.AtelierError as error:
            detail = f" ({error.detail})" if error.detail else ""
            click.echo(f"error: {error.message}{detail}", err=True)
            ctx.exit(next(code for cls, code in EXIT_CODES if isinstance(error, cls)))
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt):
            raise
        except Exception as error:
            if os.environ.get("ATELIER_DEBUG"):
                raise
            click.echo(
                f"error: internal error ({type(error).__name__}: {error}); set ATELIER_DEBUG=1 for details", err=True
            )
            ctx.exit(1)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="atelier")
@click.option("--data-dir", envvar="ATELIER_DATA_DIR", help="Where the database, models and images live.")
@click.option(
    "--database-url", envvar="ATELIER_DATABASE_URL", help="SQLAlchemy URL; SQLite in the data dir by default."
)
@click.pass_context
def cli(ctx: click.Context, data_dir: str | None, database_url: str | None) -> None:
    """Atelier: Chinese-first image generation with a persistent job queue.

    \b
    Examples:
      atelier models init-demo
      atelier generate "一只猫在草地上" --seed 42 --out ./out
      atelier serve --port 8000
    """
    ctx.obj = {"data_dir": data_dir, "database_url": database_url}


def main() -> None:
    cli.main(prog_name="atelier")


if __name__ == "__main__":
    main()
