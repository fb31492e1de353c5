"""Property-based fuzzing of the HTTP API against its own OpenAPI document (schemathesis, in-process ASGI).

Two deployments: the test profile (in-memory jobs, the pattern generator) and the SQLite profile (the local
profile: SQLite, the real demo models on CPU; the tiny Llama and hashing embeddings answer knowledge queries,
so no language model is converted). Every operation of ``/openapi.json`` gets positive and negative cases,
half of those with path parameters on real resources. A response must not be a server error (status ≥ 500,
an exception escaping the app, an internal-error body below 500) and must conform to the document: a
documented status code, the documented content type and body.

The engine is ``benchmarks.fuzz`` (``make fuzz`` runs it longer): generation costs are clamped, failures are
collected rather than shrunk, so the assertion lists every distinct failure with the request that caused it,
and a fixed seed makes a run reproducible. About a minute per deployment on two cores.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.fuzz import campaign, known_ids, open_atelier, render
from tests.conftest import register_demo

pytestmark = pytest.mark.slow

EXAMPLES = 12  # per operation and mode (positive, negative)
SECONDS = 240  # a safety net per deployment; a normal run ends well before


@pytest.fixture(params=["test", "sqlite"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, dict[str, list[Any]]]]:
    """The app of one profile and real ids of its resources."""
    from schemathesis.python.asgi import shutdown_lifespans

    from app.entrypoints.http.app import create_app

    data_dir = str(tmp_path / "data")
    if request.param == "sqlite":
        from app.adapters.transformers.tiny import build_tiny_llama

        demo_models = request.getfixturevalue("demo_models")
        llm = str(tmp_path / "tiny-llama")
        build_tiny_llama(llm)
        atelier = open_atelier("sqlite", data_dir, lambda a: register_demo(a, demo_models), llm=llm, embedder="hashing")
    else:
        atelier = open_atelier("test", data_dir)
    try:
        yield create_app(atelier), known_ids(atelier)
    finally:
        shutdown_lifespans()
        atelier.close()


def test_every_operation_answers_as_documented(deployment: tuple[Any, dict[str, list[Any]]]) -> None:
    import schemathesis

    app, ids = deployment
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    reports = campaign(schema, ids, examples=EXAMPLES, seed=0, seconds=SECONDS, rounds=1)
    assert reports and all(report.cases > 0 for report in reports), [(r.operation, r.cases) for r in reports]
    failing = [report for report in reports if report.distinct]
    if failing:
        pytest.fail(f"{sum(len(r.distinct) for r in failing)} distinct failures:\n{render(failing)}", pytrace=False)
