"""The ModelCatalog contract, run against the JSON registry and the in-memory fake, then what only
the JSON registry promises: it persists, it reads real diffusers folders (the real inspector, which
only reads JSON, so no weights are needed), it fetches hub ids, and concurrent adds lose nothing."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.adapters.diffusers.layout import inspect, inspect_model
from app.adapters.memory.generation import InMemoryModelCatalog
from app.adapters.storage.catalog import JsonModelCatalog
from app.adapters.storage.hub import download_from_hub
from app.domain.errors import InvalidParameters, ModelAlreadyRegistered, ModelUnavailable, UnknownModel
from app.ports.generation import ModelCatalog


def diffusers_folder(folder: Path, *, sample_size: int = 32, blocks: int = 2) -> Path:
    """The JSON skeleton of a diffusers text-to-image folder (no weights)."""
    folder.mkdir(parents=True)
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.30.0",
        "tokenizer": ["transformers", "BertTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (folder / "model_index.json").write_text(json.dumps(index), encoding="utf-8")
    (folder / "unet").mkdir()
    (folder / "unet" / "config.json").write_text(json.dumps({"sample_size": sample_size}), encoding="utf-8")
    (folder / "vae").mkdir()
    vae = {"block_out_channels": [32 * (i + 1) for i in range(blocks)]}
    (folder / "vae" / "config.json").write_text(json.dumps(vae), encoding="utf-8")
    return folder


def no_download(hub_id: str, cache_dir: str) -> str:
    raise AssertionError(f"nothing should be downloaded here (asked for {hub_id!r})")


def json_catalog(data_dir: Path, downloader: Callable[[str, str], str] = no_download) -> JsonModelCatalog:
    return JsonModelCatalog(str(data_dir), inspector=inspect, downloader=downloader)


CATALOGS: dict[str, Callable[[Path], ModelCatalog]] = {
    "json": lambda tmp: json_catalog(tmp / "data"),
    "memory": lambda tmp: InMemoryModelCatalog(),
}


@pytest.fixture(params=sorted(CATALOGS))
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> ModelCatalog:
    return CATALOGS[request.param](tmp_path)


@pytest.fixture
def source(tmp_path: Path) -> Callable[[str], str]:
    """A fresh diffusers folder per call (the in-memory catalog accepts any source)."""

    def make(name: str) -> str:
        return str(diffusers_folder(tmp_path / "sources" / name))

    return make


# -- the contract -------------------------------------------------------------------------


def test_added_models_come_back_from_get_and_list(catalog: ModelCatalog, source: Callable[[str], str]) -> None:
    assert catalog.list() == []
    beta_source, alpha_source = source("beta"), source("alpha")
    beta = catalog.add("beta", beta_source)
    alpha = catalog.add("alpha", alpha_source)
    assert (beta.name, beta.source, alpha.name, alpha.source) == ("beta", beta_source, "alpha", alpha_source)
    assert catalog.get("beta") == beta and catalog.get("alpha") == alpha
    assert catalog.list() == [alpha, beta]  # sorted by name


def test_a_removed_model_is_gone_and_its_source_stays(catalog: ModelCatalog, source: Callable[[str], str]) -> None:
    kept, doomed = catalog.add("kept", source("kept")), catalog.add("doomed", source("doomed"))
    assert catalog.remove("doomed") == doomed
    with pytest.raises(UnknownModel):
        catalog.get("doomed")
    with pytest.raises(UnknownModel):
        catalog.remove("doomed")
    assert catalog.list() == [kept]
    if isinstance(catalog, JsonModelCatalog):
        assert Path(doomed.path).is_dir()  # the user's folder is not the catalog's to delete


def test_removing_a_converted_model_deletes_its_converted_folder(tmp_path: Path) -> None:
    def convert(file: str, out_dir: str, config_dir: str | None) -> str:
        return str(diffusers_folder(Path(out_dir)))

    catalog = JsonModelCatalog(str(tmp_path / "data"), inspector=inspect, downloader=no_download, converter=convert)
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"weights")
    config = diffusers_folder(tmp_path / "config")
    info = catalog.add("converted", str(checkpoint), config=str(config))
    assert Path(info.path).is_dir() and Path(info.path).is_relative_to(tmp_path / "data")
    catalog.remove("converted")
    assert not Path(info.path).exists() and checkpoint.is_file()


def test_an_unknown_name_is_unknown_model(catalog: ModelCatalog, source: Callable[[str], str]) -> None:
    catalog.add("known", source("known"))
    for name in ["unknown", "Known", "known ", ""]:
        with pytest.raises(UnknownModel):
            catalog.get(name)


def test_adding_an_existing_name_conflicts_unless_replacing(
    catalog: ModelCatalog, source: Callable[[str], str]
) -> None:
    first, second = source("first"), source("second")
    original = catalog.add("model", first)
    with pytest.raises(ModelAlreadyRegistered):
        catalog.add("model", second)
    assert catalog.get("model") == original and catalog.list() == [original]
    replaced = catalog.add("model", second, replace=True)
    assert replaced.source == second
    assert catalog.get("model") == replaced and catalog.list() == [replaced]


@pytest.mark.parametrize("name", ["../x", "", "a" * 65, "has space", "x/y", "-dash", ".hidden", "名字"])
def test_invalid_names_are_rejected(catalog: ModelCatalog, source: Callable[[str], str], name: str) -> None:
    with pytest.raises(InvalidParameters):
        catalog.add(name, source("any"))
    assert catalog.list() == []


def test_a_name_of_64_characters_is_fine(catalog: ModelCatalog, source: Callable[[str], str]) -> None:
    name = "A1._-" + "b" * 59
    assert catalog.add(name, source("long")).name == name
    assert catalog.get(name).name == name


# -- JsonModelCatalog only ----------------------------------------------------------------


def test_the_registry_survives_a_new_instance(tmp_path: Path) -> None:
    data = tmp_path / "data"
    folder = diffusers_folder(tmp_path / "tiny")
    added = json_catalog(data).add("tiny", str(folder))
    assert (added.path, added.default_size, added.tokenizer) == (str(folder.resolve()), 64, "bert")
    assert added.registered_at is not None

    reopened = json_catalog(data)
    assert reopened.get("tiny") == added and reopened.list() == [added]
    stored = json.loads((data / "models.json").read_text(encoding="utf-8"))
    assert stored["models"]["tiny"]["path"] == str(folder.resolve())


def test_the_inspector_reads_the_native_size(tmp_path: Path) -> None:
    catalog = json_catalog(tmp_path / "data")
    info = catalog.add("wide", str(diffusers_folder(tmp_path / "wide", sample_size=64, blocks=4)))
    assert info.default_size == 512 and catalog.get("wide").default_size == 512


def test_a_folder_without_model_index_is_unavailable(tmp_path: Path) -> None:
    catalog = json_catalog(tmp_path / "data")
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ModelUnavailable):
        catalog.add("broken", str(folder))
    assert catalog.list() == []
    with pytest.raises(UnknownModel):
        json_catalog(tmp_path / "data").get("broken")


@pytest.mark.parametrize("kind", ["missing absolute path", "a file", "words", "three/part/path", "empty"])
def test_a_source_that_is_neither_a_folder_nor_a_hub_id_is_invalid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.chdir(tmp_path)
    a_file = tmp_path / "weights.safetensors"
    a_file.write_bytes(b"not a folder")
    sources = {
        "missing absolute path": str(tmp_path / "nowhere" / "model"),
        "a file": str(a_file),
        "words": "not a model at all",
        "three/part/path": "org/model/extra",
        "empty": "",
    }
    catalog = json_catalog(tmp_path / "data")
    with pytest.raises(InvalidParameters):
        catalog.add("model", sources[kind])
    assert catalog.list() == []


def test_a_hub_id_registers_the_downloaded_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no local folder called "org/tiny-model"
    data = tmp_path / "data"
    downloaded = diffusers_folder(tmp_path / "download" / "snapshot")
    asked: list[tuple[str, str]] = []

    def fake_download(hub_id: str, cache_dir: str) -> str:
        asked.append((hub_id, cache_dir))
        return str(downloaded)

    info = json_catalog(data, fake_download).add("tiny", "org/tiny-model")
    assert (info.name, info.source, info.path) == ("tiny", "org/tiny-model", str(downloaded))
    assert (info.default_size, info.tokenizer) == (64, "bert")
    assert json_catalog(data).get("tiny") == info
    assert [hub_id for hub_id, _ in asked] == ["org/tiny-model"]
    assert Path(asked[0][1]).resolve().is_relative_to(data.resolve())  # the hub cache lives in the data dir


def test_a_hub_id_offline_says_how_to_register_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.chdir(tmp_path)
    catalog = json_catalog(tmp_path / "data", download_from_hub)
    started = time.monotonic()
    with pytest.raises(ModelUnavailable) as caught:
        catalog.add("remote", "some-org/some-model")
    assert time.monotonic() - started < 5
    assert "some-org/some-model" in caught.value.message
    assert "atelier models add" in caught.value.message
    assert catalog.list() == []


def test_concurrent_adds_lose_nothing(tmp_path: Path) -> None:
    catalog = json_catalog(tmp_path / "data")
    folder = str(diffusers_folder(tmp_path / "shared"))
    names = [f"model-{t}-{i}" for t in range(8) for i in range(5)]
    start = threading.Barrier(9)
    errors: list[BaseException] = []
    done = threading.Event()

    def add_five(thread: int) -> None:
        start.wait()
        try:
            for i in range(5):
                catalog.add(f"model-{thread}-{i}", folder)
        except BaseException as error:
            errors.append(error)

    def read_until_done() -> None:
        start.wait()
        try:
            while not done.is_set():
                json_catalog(tmp_path / "data").list()
        except BaseException as error:
            errors.append(error)

    writers = [threading.Thread(target=add_five, args=(t,)) for t in range(8)]
    reader = threading.Thread(target=read_until_done)
    for thread in [*writers, reader]:
        thread.start()
    for thread in writers:
        thread.join(timeout=20)
    done.set()
    reader.join(timeout=20)
    assert errors == []
    assert sorted(m.name for m in catalog.list()) == sorted(names)
    assert sorted(m.name for m in json_catalog(tmp_path / "data").list()) == sorted(names)


def test_concurrent_adds_of_one_name_register_it_once(tmp_path: Path) -> None:
    inspected = threading.Barrier(8)

    def inspect_together(path: str, kind: str) -> dict[str, Any]:
        details = inspect_model(path)
        inspected.wait(timeout=10)  # all eight reach the registry write at the same moment
        return details

    catalog = JsonModelCatalog(str(tmp_path / "data"), inspector=inspect_together, downloader=no_download)
    folders = [str(diffusers_folder(tmp_path / f"v{i}")) for i in range(8)]
    outcomes: list[Any] = []

    def add(folder: str) -> None:
        try:
            outcomes.append(catalog.add("same", folder))
        except ModelAlreadyRegistered as error:
            outcomes.append(error)

    threads = [threading.Thread(target=add, args=(f,)) for f in folders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    winners = [o for o in outcomes if not isinstance(o, ModelAlreadyRegistered)]
    assert len(outcomes) == 8 and len(winners) == 1
    assert catalog.list() == winners
