"""Knowledge queries through the library on real adapters: SQLite through Alembic, sqlite-vec,
a tiny random Llama, the hashing embedder, jieba/wordfreq and the logistic detector."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.adapters.transformers.tiny import build_tiny_llama
from app.domain.errors import InvalidParameters
from app.domain.knowledge import Decision, KnowledgeQueryNotFound
from app.entrypoints.library import Atelier

FACTS = [
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Japan", "Tokyo"),
    ("Tuvalu", "Funafuti"),
    ("Niue", "Alofi"),
    ("Nauru", "Yaren"),
    ("Palau", "Ngerulmud"),
    ("Chad", "N'Djamena"),
    ("Peru", "Lima"),
    ("Kenya", "Nairobi"),
]


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_tiny_llama(str(tmp_path_factory.mktemp("llm") / "tiny"))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for country, capital in FACTS:
        (corpus / f"{country.lower()}.md").write_text(
            f"# {country}\n\n{country} is a country. Its capital is {capital}."
        )
    lines = [json.dumps({"question": f"What is the capital of {c}?", "answers": [a], "split": "cal"}) for c, a in FACTS]
    (tmp_path / "questions.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def open_atelier(tmp_path: Path, llm: str) -> Atelier:
    return Atelier.open(data_dir=str(tmp_path / "atelier"), start_worker=False, llm=llm, embedder="hashing")


def test_ingest_calibrate_ask_and_read_back(tmp_path: Path, data: Path, tiny_llm: str) -> None:
    with open_atelier(tmp_path, tiny_llm) as atelier:
        uncalibrated = atelier.knowledge.ask("What is the capital of Peru?")  # answered, by the weaker rule
        assert uncalibrated.signals.gate == "token_prob" and uncalibrated.answer
        report = atelier.knowledge.ingest([str(data / "corpus")])
        assert (report.documents, report.chunks, report.replaced) == (10, 10, 0)
        # The same file named directly is the same source: its chunk is replaced, not duplicated.
        assert atelier.knowledge.ingest([str(data / "corpus" / "peru.md")]).replaced == 1
        assert atelier.container.knowledge_index().count() == 10
        calibration, signals = atelier.knowledge.calibrate(str(data / "questions.jsonl"), split="cal")
        assert calibration.n == 10 and len(signals) == 10 and len(calibration.mean_gradient) == 4096
        assert calibration.features == [
            "alpha",
            "mean_token_prob",
            "min_token_prob",
            "grad_alignment",
            "neighbour_gece",
            "state_probe",
        ]
        hidden = atelier.container.llm().model.config.hidden_size
        assert len(calibration.probe["weights"]) == hidden and all(len(s.state) == hidden for s in signals)
        assert all(0.0 <= s.meteor <= 1.0 and 0.0 < s.mean_token_prob <= 1.0 and s.gece > 0 for s in signals)

        query = atelier.knowledge.ask("What is the capital of Tuvalu?", top_k=3)
        early, cut = query.signals.early_estimate, calibration.early_threshold
        assert early is not None and 0.0 <= early <= 1.0 and query.signals.state_probe is not None
        if cut is not None and early > cut:  # judged long-tail before any answer
            assert query.decision is Decision.RETRIEVED and query.parametric_answer == ""
            assert query.signals.gece_estimate is None and "parametric_answer" not in query.timings
        elif query.signals.aborted_at is not None:  # judged long-tail while answering
            assert query.decision is Decision.RETRIEVED and query.signals.gece_estimate is None
            assert calibration.abort_min_prob is not None
            assert (
                query.signals.min_token_prob is not None and query.signals.min_token_prob < calibration.abort_min_prob
            )
        else:
            estimate, threshold = query.signals.gece_estimate, query.signals.threshold
            assert estimate is not None and threshold == 0.5
            assert query.decision is (Decision.RETRIEVED if estimate > threshold else Decision.PARAMETRIC)
        forced = atelier.knowledge.ask("What is the capital of Tuvalu?", top_k=3, retrieval="always")
        assert forced.decision is Decision.RETRIEVED and len(forced.passages) == 3
        assert forced.passages[0].source.endswith("tuvalu.md") and "Funafuti" in forced.passages[0].text
        assert forced.timings["total"] >= forced.timings["retrieved_answer"] > 0
        query_id = forced.id

    with open_atelier(tmp_path, tiny_llm) as again:  # everything was persisted
        stored = again.knowledge.query(query_id)
        assert stored.passages == forced.passages and stored.signals == forced.signals
        assert again.knowledge.queries().total == 3  # the uncalibrated one too
        assert again.knowledge.calibration() == calibration
        with pytest.raises(KnowledgeQueryNotFound):
            again.knowledge.query(query_id, owner="someone-else")


def test_bad_inputs_name_the_problem(tmp_path: Path, data: Path, tiny_llm: str) -> None:
    with open_atelier(tmp_path, tiny_llm) as atelier:
        with pytest.raises(InvalidParameters, match="No such file"):
            atelier.knowledge.ingest([str(tmp_path / "missing.md")])
        (tmp_path / "empty.md").write_text("   ")
        with pytest.raises(InvalidParameters, match="empty"):
            atelier.knowledge.ingest([str(tmp_path / "empty.md")])
        (tmp_path / "bad.jsonl").write_text('{"question": "q?"}\n')
        with pytest.raises(InvalidParameters, match="answers"):
            atelier.knowledge.calibrate(str(tmp_path / "bad.jsonl"))
        with pytest.raises(InvalidParameters, match="at least"):
            atelier.knowledge.calibrate(str(data / "questions.jsonl"), limit=3)
        with pytest.raises(InvalidParameters, match="empty"):
            atelier.knowledge.ask("  ", retrieval="never")


def test_resolving_the_use_case_restores_nothing_and_each_query_restores_the_edits(tmp_path: Path) -> None:
    """Serving the edited model is an explicit first step of a query, not a side effect of building it."""
    from dependency_injector import providers

    with Atelier.open(data_dir=str(tmp_path), profile="test") as atelier:
        calls: list[int] = []
        atelier.container.restore_edits.override(providers.Object(lambda: calls.append(1)))
        ask = atelier.container.ask_question()
        assert calls == []
        ask("What is the capital of France?", "local", retrieval="never")
        ask("What is the capital of Peru?", "local", retrieval="never")
        assert calls == [1, 1]
