"""The studio: a zero-code web page at ``/`` over the public HTTP API.

A hand-written page (HTML, CSS and one script, no build step, no third-party code) that ships inside
the package, so it works offline and adds nothing to the install. It calls the same endpoints as any
client; every rule lives in the use cases behind them.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from app import __version__

ASSETS = Path(__file__).with_name("studio")
router = APIRouter(include_in_schema=False)


@cache
def _page() -> str:
    # The version in the asset URLs makes browsers fetch new assets after an upgrade.
    return (ASSETS / "index.html").read_text(encoding="utf-8").replace("{{version}}", __version__)


@router.get("/", response_class=HTMLResponse)
def studio() -> HTMLResponse:
    return HTMLResponse(_page(), headers={"Cache-Control": "no-cache"})


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/studio", StaticFiles(directory=ASSETS), name="studio")
