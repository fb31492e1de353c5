"""Helpers shared by the commands: opening Atelier and printing."""

from __future__ import annotations

import json
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import datetime
from enum import Enum
from typing import Any

import click

from app.domain.jobs import GenerationJob
from app.entrypoints.library import Atelier


def open_atelier(ctx: click.Context, *, start_worker: bool = False, recover: bool = False, **settings: Any) -> Atelier:
    obj = ctx.find_root().obj or {}
    atelier = Atelier.open(
        database_url=obj.get("database_url"),
        data_dir=obj.get("data_dir"),
        start_worker=start_worker,
        recover=recover,
        **settings,
    )
    ctx.call_on_close(atelier.close)
    return atelier


def to_plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if is_dataclass(value) and not isinstance(value, type):
        return {k: to_plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, frozenset | set):
        return sorted(to_plain(v) for v in value)
    return value


def job_dict(job: GenerationJob, atelier: Atelier | None = None) -> dict[str, Any]:
    data: dict[str, Any] = to_plain(job)
    data["seed"] = job.seed
    if atelier is not None:
        for image in data["images"]:
            try:
                image["path"] = atelier.container.images().path(image["id"])
            except Exception:
                image["path"] = None
    return data


def echo_json(data: Any) -> None:
    click.echo(json.dumps(to_plain(data), ensure_ascii=False, indent=2))


def job_line(job: GenerationJob) -> str:
    p = job.params
    when = job.created_at.strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"{job.id}  {job.status.value:<9} {job.progress:4.0%}  {when}  {p.model}  {p.width}x{p.height}  {p.prompt[:40]}"
    )


JOB_COLUMNS = ("ID", "STATUS", "PROGRESS", "CREATED", "MODEL", "SIZE", "PROMPT")


def job_row(job: GenerationJob) -> list[str]:
    p = job.params
    size = f"{p.width}x{p.height}" if p.width and p.height else "-"
    when = job.created_at.strftime("%Y-%m-%d %H:%M:%S")
    return [job.id, job.status.value, f"{job.progress:.0%}", when, p.model, size, p.prompt[:40]]


def _width(text: str) -> int:
    """Terminal columns of ``text``: wide (CJK) characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def echo_table(headers: Sequence[str], rows: Iterable[Sequence[str]], right: Sequence[int] = ()) -> None:
    """Rows under a header naming the columns; every column but the last padded to its widest cell,
    the columns numbered in ``right`` aligned right (numbers)."""
    table = [list(headers), *(list(row) for row in rows)]
    widths = [max(_width(row[i]) for row in table) for i in range(len(headers))]
    for row in table:
        cells = []
        for i, cell in enumerate(row):
            pad = " " * (widths[i] - _width(cell)) if i < len(row) - 1 or i in right else ""
            cells.append(pad + cell if i in right else cell + pad)
        click.echo("  ".join(cells).rstrip())


class AliasOption(click.Option):
    """An option some of whose names are kept working but left out of ``--help`` (old spellings)."""

    def __init__(self, *args: Any, hidden_names: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hidden_names = tuple(hidden_names)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown, self.opts = self.opts, [o for o in self.opts if o not in self.hidden_names]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


quiet_option = click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="No progress output (a bar on a terminal; elsewhere one line when the work is done).",
)


class Progress:
    """Progress of long work on stderr, counted in ``unit`` with its rate in it/s.

    On a terminal: a tqdm bar (``12/20 steps [00:03<00:02, 4.10 it/s]``), redrawn in place. Anywhere
    else (a log, a pipe, a CI job): nothing while the work runs and one line when :meth:`finish` is
    called (``generating: 20/20 steps in 6.1 s (4.02 it/s)``), so a log gets no redrawn lines. The
    rate counts from the first step reported (not the wait for a model to load). ``quiet``: nothing at all.
    """

    def __init__(self, desc: str, unit: str = "it", quiet: bool = False, leave: bool = False) -> None:
        self.desc, self.unit, self.quiet, self.leave = desc, unit, quiet, leave
        self.terminal = not quiet and _stderr_is_terminal()
        self.n = self.total = self._first = 0
        self._started: float | None = None
        self._working: tuple[float, int] | None = None  # when the count first moved, and to what
        self._last = 0.0  # when the count was last reported
        self._postfix = self._info = ""
        self._bar: Any = None

    def update(self, done: int, total: int, info: Mapping[str, float] | None = None, status: str = "") -> None:
        now = time.monotonic()
        if self._started is None:
            self._started = now
            self._first = max(0, done - 1)  # a resumed run: the bar starts where it is
        if self._working is None and done > self._first:
            self._working = (now, done)  # the rate leaves out what came before (queueing, loading a model)
        self.n, self.total, self._last = done, total, now
        self._info = ", ".join(f"{k}={_round(v)}" for k, v in (info or {}).items())
        self._postfix = ", ".join(part for part in (status, self._info) if part)
        if not self.terminal:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                initial=self._first,
                desc=self.desc,
                unit=" it",
                leave=self.leave,
                file=sys.stderr,
                dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                + self.unit
                + " [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]",
            )
        if total != self._bar.total:
            self._bar.total = total
        self._bar.update(done - self._bar.n)
        self._bar.set_postfix_str(self._postfix, refresh=False)

    def finish(self) -> None:
        """The work is done: off a terminal, its one line (when any progress was reported)."""
        if self.terminal or self.quiet or self._started is None:
            return
        now = time.monotonic()
        details = [self._info] if self._info else []
        if self._working is not None and self.n > self._working[1] and self._last > self._working[0]:
            details.insert(0, f"{(self.n - self._working[1]) / (self._last - self._working[0]):.2f} it/s")
        line = f"{self.desc}: {self.n}/{self.total} {self.unit} in {_duration(now - self._started)}"
        click.echo(f"{line} ({', '.join(details)})" if details else line, err=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _round(value: float) -> float:
    return round(value, 3) if abs(value) >= 0.01 else float(f"{value:.3g}")


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextmanager
def progress_bar(desc: str, quiet: bool, unit: str = "it") -> Iterator[Callable[..., None]]:
    """A :class:`Progress` fed ``update(done, total, info=None)`` (``info`` shown after the rate);
    its one line off a terminal when the block ends without an error; nothing when ``quiet``."""
    progress = Progress(desc, unit, quiet)
    try:
        yield progress.update
        progress.close()
        progress.finish()
    finally:
        progress.close()
