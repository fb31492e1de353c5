"""The composition root composes and does nothing else: resolving a provider runs no use case, and the
SQL profile's schema comes up with the first session, once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dependency_injector import providers

from app.composition import Container
from app.settings import load_settings
from tests.fakes import FakeDetector, FakeEmbedder, FakeLanguageModel, FakeWordFrequency, InMemoryKnowledgeIndex


class Recorder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> list[Any]:
        self.calls += 1
        return []


def test_resolving_a_query_does_not_restore_edits(tmp_path: Path) -> None:
    container = Container(settings=load_settings(profile="test", data_dir=str(tmp_path)))
    restore = Recorder()
    container.restore_edits.override(providers.Object(restore))
    container.llm.override(providers.Object(FakeLanguageModel({})))
    container.embedder.override(providers.Object(FakeEmbedder()))
    container.knowledge_index.override(providers.Object(InMemoryKnowledgeIndex()))
    container.word_frequency.override(providers.Object(FakeWordFrequency()))
    container.detector.override(providers.Object(FakeDetector()))
    container.state_probe.override(providers.Object(FakeDetector()))
    container.ask_question()
    container.calibrate_detector()
    assert restore.calls == 0  # restoring is a step of the use, not of building it


def test_the_first_session_migrates_the_schema_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import app.adapters.sql.migrate as migrate

    upgrades: list[str] = []
    real = migrate.upgrade

    def counted(url: str, revision: str = "head") -> None:
        upgrades.append(url)
        real(url, revision)

    monkeypatch.setattr(migrate, "upgrade", counted)
    container = Container(settings=load_settings(profile="local", data_dir=str(tmp_path)))
    try:
        reader = container.job_reader()
        assert upgrades == []  # building the reader touched no database
        assert reader.list().total == 0  # the tables exist: the first session migrated
        container.uow_factory()
        reader.list()
        assert len(upgrades) == 1
    finally:
        container.shutdown_resources()
