"""Helpers shared by the commands: opening Atelier and printing."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
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


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def job_dict(job: GenerationJob, atelier: Atelier | None = None) -> dict[str, Any]:
    data: dict[str, Any] = _plain(job)
    data["seed"] = job.seed
    if atelier is not None:
        for image in data["images"]:
            try:
                image["path"] = atelier.container.images().path(image["id"])
            except Exception:
                image["path"] = None
    return data


def echo_json(data: Any) -> None:
    click.echo(json.dumps(_plain(data), ensure_ascii=False, indent=2))


def job_line(job: GenerationJob) -> str:
    p = job.params
    when = job.created_at.strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"{job.id}  {job.status.value:<9} {job.progress:4.0%}  {when}  {p.model}  {p.width}x{p.height}  {p.prompt[:40]}"
    )


@contextmanager
def progress_bar(desc: str, quiet: bool) -> Iterator[Callable[..., None]]:
    """A tqdm bar fed ``update(done, total, info=None)`` (``info`` shown after the bar); none when ``quiet``."""
    from tqdm import tqdm

    bar: Any = None

    def update(done: int, total: int, info: dict[str, float] | None = None) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, disable=quiet, leave=False)
        bar.update(done - bar.n)
        if info:
            bar.set_postfix({k: round(v, 3) for k, v in info.items()}, refresh=False)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()
