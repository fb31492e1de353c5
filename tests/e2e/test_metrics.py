"""GET /metrics: Prometheus' text format, read with prometheus-client's own parser, after real jobs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.entrypoints.http.app import create_app
from app.entrypoints.library import Atelier
from tests.e2e.conftest import open_test_atelier

pytestmark = pytest.mark.anyio


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.fixture
async def atelier(tmp_path: Path) -> AsyncIterator[Atelier]:
    instance = open_test_atelier(tmp_path, api_keys=("user",), admin_keys=("admin",))
    yield instance
    instance.close()


def client(atelier: Atelier, key: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(atelier))
    return httpx.AsyncClient(transport=transport, base_url="http://a", headers={"Authorization": f"Bearer {key}"})


async def test_the_metrics_reflect_finished_and_queued_jobs(atelier: Atelier) -> None:
    async with client(atelier, "admin") as admin, client(atelier, "user") as user:
        assert (await user.get("/metrics")).status_code == 403
        anonymous = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(atelier)), base_url="http://a")
        async with anonymous:
            assert (await anonymous.get("/metrics")).status_code == 401
        done = (await user.post("/v1/jobs", json={"prompt": "猫", "width": 64, "height": 64, "steps": 2})).json()
        for _ in range(500):
            if (await user.get(f"/v1/jobs/{done['id']}")).json()["status"] == "succeeded":
                break
            await asyncio.sleep(0.02)
        reply = await admin.get("/metrics")
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
        found = samples(reply.text)
        assert found[("atelier_database_up", ())] == 1
        assert found[("atelier_jobs", (("status", "succeeded"),))] == 1
        assert found[("atelier_workers", ())] >= 1
        labels: Any = (("family", "sd"), ("mode", "txt2img"), ("status", "succeeded"))
        assert found[("atelier_job_duration_seconds_count", labels)] == 1
        assert found[("atelier_batch_size_count", ())] == 1
        assert found[("atelier_cluster_workers", ())] == 1  # this process, from the worker registry
