"""The ImageStore contract, run against the PNG file store and the in-memory fake, then what
only the file store promises: real PNGs with their parameters, atomic writes, ids that never
reach outside the root."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from app.adapters.storage.images import FileImageStore
from app.domain.errors import GenerationFailed, ImageNotFound, StorageUnavailable
from app.domain.jobs import new_job_id
from app.ports.generation import GeneratedImage, ImageStore
from tests.fakes import InMemoryImageStore

PARAMETERS = "一只猫在草地上，水彩风格\nNegative prompt: 模糊\nSteps: 3, Seed: 42, Size: 3x2"


def picture(seed: int, width: int = 3, height: int = 2, nsfw: bool | None = None) -> GeneratedImage:
    """Distinct pixels per seed, so a mixed-up file shows."""
    rgb = bytes((seed * 31 + i * 7) % 256 for i in range(width * height * 3))
    return GeneratedImage(width=width, height=height, rgb=rgb, seed=seed, nsfw=nsfw)


STORES: dict[str, Callable[[Path], ImageStore]] = {
    "file": lambda tmp: FileImageStore(str(tmp / "images")),
    "memory": lambda tmp: InMemoryImageStore(),
}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ImageStore:
    return STORES[request.param](tmp_path)


# -- the contract -------------------------------------------------------------------------


def test_save_returns_a_reference_named_after_the_job(store: ImageStore) -> None:
    job_id = new_job_id()
    first = store.save(job_id, 0, picture(42, nsfw=False), PARAMETERS)
    second = store.save(job_id, 1, picture(43, width=4, height=5, nsfw=True), PARAMETERS)
    third = store.save(job_id, 2, picture(44), PARAMETERS)
    assert (first.id, first.seed, first.width, first.height, first.nsfw) == (f"{job_id}-0", 42, 3, 2, False)
    assert (second.id, second.seed, second.width, second.height, second.nsfw) == (f"{job_id}-1", 43, 4, 5, True)
    assert third.id == f"{job_id}-2" and third.nsfw is None


def test_a_saved_image_has_a_path_and_ids_stay_distinct(store: ImageStore) -> None:
    job_id = new_job_id()
    refs = [store.save(job_id, i, picture(i), PARAMETERS) for i in range(3)]
    paths = [store.path(ref.id) for ref in refs]
    assert all(isinstance(p, str) and p for p in paths)
    assert len(set(paths)) == 3


@pytest.mark.parametrize(
    "image_id",
    [
        "0123456789abcdef0123456789abcdef-0",  # well formed, never saved
        "",
        "not-an-id",
        "../../etc/passwd",
        "/etc/passwd",
        "0123456789ABCDEF0123456789ABCDEF-0",
        "0123456789abcdef0123456789abcdef-999",
        "0123456789abcdef0123456789abcdef-0/../../x",
        "0123456789abcdef0123456789abcdef",
    ],
)
def test_an_unknown_or_malformed_id_is_not_found(store: ImageStore, image_id: str) -> None:
    store.save(new_job_id(), 0, picture(1), PARAMETERS)  # the store is not empty
    with pytest.raises(ImageNotFound):
        store.path(image_id)


def test_delete_job_removes_exactly_that_jobs_images(store: ImageStore) -> None:
    doomed = new_job_id()
    kept = doomed[:8] + new_job_id()[8:]  # shares a prefix (and the file store's folder) with the doomed job
    doomed_refs = [store.save(doomed, i, picture(i), PARAMETERS) for i in range(3)]
    kept_refs = [store.save(kept, i, picture(10 + i), PARAMETERS) for i in range(2)]
    store.delete_job(doomed)
    for ref in doomed_refs:
        with pytest.raises(ImageNotFound):
            store.path(ref.id)
    assert all(store.path(ref.id) for ref in kept_refs)
    store.delete_job(new_job_id())  # a job without images: nothing happens
    assert all(store.path(ref.id) for ref in kept_refs)


def test_a_deleted_job_can_save_again(store: ImageStore) -> None:
    job_id = new_job_id()
    store.save(job_id, 0, picture(1), PARAMETERS)
    store.delete_job(job_id)
    ref = store.save(job_id, 0, picture(2), PARAMETERS)
    assert ref.seed == 2 and store.path(ref.id)


# -- FileImageStore only ------------------------------------------------------------------


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_the_png_holds_the_pixels_and_the_parameters(tmp_path: Path) -> None:
    store = FileImageStore(str(tmp_path / "images"))
    image = picture(7, width=5, height=4)
    ref = store.save(new_job_id(), 3, image, PARAMETERS)
    path = Path(store.path(ref.id))
    assert path.is_file() and path.resolve().is_relative_to((tmp_path / "images").resolve())
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size == (5, 4)
        assert png.convert("RGB").tobytes() == image.rgb
        assert png.info["parameters"] == PARAMETERS


def test_saving_again_replaces_the_image(tmp_path: Path) -> None:
    store = FileImageStore(str(tmp_path / "images"))
    job_id = new_job_id()
    store.save(job_id, 0, picture(1), "first")
    ref = store.save(job_id, 0, picture(2), "second")
    with Image.open(store.path(ref.id)) as png:
        assert png.convert("RGB").tobytes() == picture(2).rgb and png.info["parameters"] == "second"


def test_a_save_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = FileImageStore(str(tmp_path / "images"))
    job_id = new_job_id()
    refs = [store.save(job_id, i, picture(i), PARAMETERS) for i in range(3)]
    assert list(tmp_path.rglob("*.tmp")) == []
    assert files_under(tmp_path) == {Path(store.path(ref.id)) for ref in refs}


def test_pixels_too_short_for_the_size_store_nothing(tmp_path: Path) -> None:
    store = FileImageStore(str(tmp_path / "images"))
    job_id = new_job_id()
    short = GeneratedImage(width=3, height=2, rgb=bytes(17), seed=1)
    with pytest.raises(GenerationFailed):
        store.save(job_id, 0, short, PARAMETERS)
    assert files_under(tmp_path) == set()
    with pytest.raises(ImageNotFound):
        store.path(f"{job_id}-0")


def test_pixels_too_long_for_the_size_are_rejected(tmp_path: Path) -> None:
    store = FileImageStore(str(tmp_path / "images"))
    job_id = new_job_id()
    long = GeneratedImage(width=3, height=2, rgb=bytes(18 + 5), seed=1)
    with pytest.raises(GenerationFailed):
        store.save(job_id, 0, long, PARAMETERS)
    assert files_under(tmp_path) == set()


def test_a_save_that_fails_while_writing_leaves_the_old_image_and_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileImageStore(str(tmp_path / "images"))
    job_id = new_job_id()
    old = store.save(job_id, 0, picture(1), "old")
    before = files_under(tmp_path)

    def disk_full(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        fp.write(b"\x89PNG\r\n\x1a\n half a picture")  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    for index, seed in ((0, 2), (1, 3)):
        with pytest.raises(StorageUnavailable) as caught:
            store.save(job_id, index, picture(seed), "new")
        assert caught.value.code == "storage_full" and str(tmp_path) not in caught.value.message
        assert "No space" in (caught.value.detail or "")  # the operator's reason is kept
    monkeypatch.undo()

    assert files_under(tmp_path) == before
    with Image.open(store.path(old.id)) as png:
        assert png.convert("RGB").tobytes() == picture(1).rgb and png.info["parameters"] == "old"
    with pytest.raises(ImageNotFound):
        store.path(f"{job_id}-1")


HOSTILE_IDS = [
    "../../etc/passwd",
    "../../../x",
    "..",
    "{job}-0/../../x",
    "{job}-0/../../../x",
    "{JOB}-0",
    "{job}-999",
    "{job}-0.png",
    "{job}-0/",
    "{job}--1",
    " {job}-0",
    "{job}-0 ",
    "{absolute}",
]


def test_hostile_ids_never_reach_a_file(tmp_path: Path) -> None:
    """Each hostile id gets a decoy file where joining it naively onto the root would land;
    the store must refuse them all, touch none of the decoys and create nothing."""
    root = tmp_path / "deep" / "er" / "images"
    store = FileImageStore(str(root))
    job_id = new_job_id()
    store.save(job_id, 0, picture(1), PARAMETERS)
    ids = [i.format(job=job_id, JOB=job_id.upper(), absolute=str(tmp_path / "outside" / "secret")) for i in HOSTILE_IDS]
    for image_id in ids:
        decoy = Path(os.path.normpath(root / image_id[:2] / f"{image_id}.png"))
        if decoy.resolve().is_relative_to(tmp_path.resolve()) and not decoy.exists():
            decoy.parent.mkdir(parents=True, exist_ok=True)
            decoy.write_bytes(b"decoy")
    before = {p: p.read_bytes() for p in files_under(tmp_path)}
    assert len(before) > len(ids) // 2  # most ids did get a decoy

    for image_id in ids:
        with pytest.raises(ImageNotFound):
            store.path(image_id)
        with pytest.raises(ImageNotFound):
            store.save(image_id, 0, picture(2), PARAMETERS)
        with pytest.raises(ImageNotFound):
            store.delete_job(image_id)

    assert {p: p.read_bytes() for p in files_under(tmp_path)} == before
    assert store.path(f"{job_id}-0")  # the real image is still there


def test_hostile_job_ids_create_nothing_outside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "images"
    store = FileImageStore(str(root))
    for job_id in ["../../x", "..", "/tmp/x", str(tmp_path / "elsewhere"), "ab/../../cd", "", "0" * 31]:
        with pytest.raises(ImageNotFound):
            store.save(job_id, 0, picture(1), PARAMETERS)
        with pytest.raises(ImageNotFound):
            store.delete_job(job_id)
    assert [p.name for p in tmp_path.iterdir()] in ([], ["images"])
    assert files_under(tmp_path) == set()
