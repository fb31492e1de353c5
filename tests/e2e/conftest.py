from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from app.entrypoints.http.app import create_app
from app.entrypoints.library import Atelier
from tests.conftest import register_demo


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def finished(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """The job once it has ended (succeeded, failed or cancelled), polled through the API for up to a minute."""
    for _ in range(3000):
        body: dict[str, Any] = (await client.get(f"/v1/jobs/{job_id}")).json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish: {body}")


def open_test_atelier(tmp_path: Any, **settings: Any) -> Atelier:
    return Atelier.open(data_dir=str(tmp_path), profile="test", **settings)


@pytest.fixture
def atelier(tmp_path: Any) -> Iterator[Atelier]:
    instance = open_test_atelier(tmp_path)
    yield instance
    instance.close()


@pytest.fixture
async def client(atelier: Atelier) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(atelier)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://atelier") as c:
        yield c


@pytest.fixture
def data_dir(tmp_path: Any, demo_models: dict[str, tuple[str, str]]) -> str:
    """A fresh data dir with the demo models registered (SQLite, local profile)."""
    with Atelier.open(data_dir=str(tmp_path), start_worker=False) as instance:
        register_demo(instance, demo_models)
    return str(tmp_path)
