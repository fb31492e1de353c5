"""Knowledge queries end to end over fakes: ingest, calibrate, ask (parametric, retrieved, baselines), errors."""

from __future__ import annotations

import functools
from dataclasses import replace
from datetime import timedelta

import pytest

from app.adapters.memory.knowledge import InMemoryCalibrationStore, InMemoryKnowledgeQueryStore
from app.domain.errors import IndexUnavailable, InvalidParameters, RequestTooLarge
from app.domain.knowledge import Decision, KnowledgeQueryNotFound
from app.usecases.ask_question import AskQuestion
from app.usecases.calibrate_detector import CalibrateDetector, LabelledQuestion, youden_threshold
from app.usecases.ingest_documents import IngestDocuments
from app.usecases.knowledge_signals import answer_matches
from tests.fakes import (
    FakeClock,
    FakeDetector,
    FakeEmbedder,
    FakeLanguageModel,
    FakeLexicon,
    FakeWordFrequency,
    InMemoryKnowledgeIndex,
)

KNOWN = {
    "What is the capital of France?": "Paris",
    "What is the capital of Germany?": "Berlin",
    "What is the capital of Japan?": "Tokyo",
    "What is the capital of Italy?": "Rome",
    "What is the capital of Spain?": "Madrid",
    "What is the capital of Egypt?": "Cairo",
}
TAIL = {
    "What is the capital of Tuvalu?": "Funafuti",
    "What is the capital of Niue?": "Alofi",
    "What is the capital of Nauru?": "Yaren",
    "What is the capital of Palau?": "Ngerulmud",
    "What is the capital of Tokelau?": "Nukunonu",
    "What is the capital of Montserrat?": "Brades",
}
COUNTRIES = {q: q.split()[-1].rstrip("?") for q in TAIL}
CORPUS = [(f"{c.lower()}.md", f"{c} is a small island. Its capital is {TAIL[q]}.") for q, c in COUNTRIES.items()]


class World:
    def __init__(self) -> None:
        self.llm = FakeLanguageModel(KNOWN)
        self.embedder = FakeEmbedder()
        self.index = InMemoryKnowledgeIndex()
        self.words = FakeWordFrequency({"tuvalu": 1.0, "niue": 1.0, "nauru": 1.0, "palau": 1.5})
        self.calibrations = InMemoryCalibrationStore()
        self.queries = InMemoryKnowledgeQueryStore()
        self.clock = FakeClock()
        self.ask = AskQuestion(
            self.llm, self.embedder, self.index, self.words, FakeDetector(), self.calibrations, self.queries, self.clock
        )
        self.calibrator = CalibrateDetector(
            self.llm, self.embedder, self.words, FakeLexicon(), FakeDetector(), self.calibrations, self.clock
        )
        # The detector's flow (here the token probabilities alone separate perfectly, so "auto" would choose them)
        self.calibrate = functools.partial(self.calibrator, gate="detector")
        self.ingest = IngestDocuments(self.embedder, self.index)

    def labelled(self) -> list[LabelledQuestion]:
        return [LabelledQuestion(q, [a]) for q, a in {**KNOWN, **TAIL}.items()]


@pytest.fixture
def world() -> World:
    return World()


def test_never_retrieve_answers_from_the_model_and_stores_the_query(world: World) -> None:
    query = world.ask("What is the capital of France?", owner="alice", retrieval="never")
    assert (query.answer, query.decision, query.passages) == ("Paris", Decision.PARAMETRIC, [])
    assert {"parametric_answer", "total"} <= set(query.timings)
    assert world.queries.get(query.id, owner="alice").answer == "Paris"
    with pytest.raises(KnowledgeQueryNotFound):
        world.queries.get(query.id, owner="bob")


def test_without_a_calibration_the_token_probability_rule_decides_and_says_so(world: World) -> None:
    world.ingest(CORPUS)
    known = world.ask("What is the capital of France?", owner="alice")
    assert (known.answer, known.decision) == ("Paris", Decision.PARAMETRIC)
    assert (known.signals.gate, known.signals.threshold, known.signals.min_token_prob) == ("token_prob", 0.5, 0.95)
    tail = world.ask("What is the capital of Tuvalu?", owner="alice")  # the model is unsure: it retrieves
    assert (tail.answer, tail.decision, tail.signals.gate) == ("Funafuti", Decision.RETRIEVED, "token_prob")
    assert tail.signals.gece_estimate is None and world.queries.list().total == 2
    world.calibrate(world.labelled(), dataset="capitals")
    assert world.ask("What is the capital of Niue?", owner="alice").signals.gate == "detector"


def test_calibration_labels_the_tail_by_gece_and_stores_the_mean_gradient(world: World) -> None:
    calibration, signals = world.calibrate(world.labelled(), dataset="capitals")
    assert calibration.n == 12 and len(calibration.mean_gradient) == 8
    by_question = {s.question: s for s in signals}
    assert all(by_question[q].correct for q in KNOWN) and not any(by_question[q].correct for q in TAIL)
    # GECE is larger on every tail instance than on every popular one, and the cut lies between.
    head = [by_question[q].gece for q in KNOWN]
    tail = [by_question[q].gece for q in TAIL]
    assert max(head) < calibration.threshold_gece < min(tail)
    assert calibration.stats["gece_auroc_wrong"] == 1.0
    assert calibration.stats["long_tail_share"] == 0.5
    assert world.calibrations.latest(world.llm.name) == calibration


def test_gated_flow_keeps_known_answers_and_retrieves_for_the_tail(world: World) -> None:
    world.ingest(CORPUS)
    world.calibrate(world.labelled(), dataset="capitals")
    known = world.ask("What is the capital of Japan?", owner="alice")
    assert (known.decision, known.answer, known.passages) == (Decision.PARAMETRIC, "Tokyo", [])
    assert known.signals.gece_estimate is not None and known.signals.gece_estimate < known.signals.threshold  # type: ignore[operator]
    assert "retrieve" not in known.timings

    # Tokelau's words are as common as France's: the early signals cannot tell, the answer's can.
    tail = world.ask("What is the capital of Tokelau?", owner="alice", top_k=2, early=False)
    assert tail.decision is Decision.RETRIEVED and tail.signals.early_estimate is None
    assert tail.signals.gece_estimate > tail.signals.threshold  # type: ignore[operator]
    assert tail.parametric_answer == "I don't know" and tail.answer == "Nukunonu"
    assert tail.passages[0].source == "tokelau.md" and len(tail.passages) == 2
    assert {"parametric_answer", "signals", "retrieve", "retrieved_answer"} <= set(tail.timings)
    assert world.queries.list(owner="alice").total == 2


def test_an_unsure_answer_is_abandoned_at_its_first_token_below_the_abort_cut(world: World) -> None:
    world.ingest(CORPUS)
    calibration, _ = world.calibrate(world.labelled(), dataset="capitals")
    # Tail answers score 0.3 a token and are all long-tail, known ones 0.95: the cut lies between.
    assert calibration.abort_min_prob == pytest.approx((0.3 + 0.95) / 2)
    assert calibration.stats["abort_share"] == 0.5
    world.llm.calls.clear()
    tail = world.ask("What is the capital of Tokelau?", owner="alice", top_k=2)
    assert tail.decision is Decision.RETRIEVED and tail.answer == "Nukunonu"
    assert tail.parametric_answer == "I" and tail.signals.aborted_at == 1  # "I don't know", abandoned after "I"
    assert tail.signals.min_token_prob == 0.3 and tail.signals.early_estimate == 0.0
    assert tail.signals.gece_estimate is None and tail.signals.grad_alignment is None
    assert "signals" not in tail.timings and {"parametric_answer", "retrieve", "retrieved_answer"} <= set(tail.timings)
    assert len(world.llm.calls) == 2 and not world.llm.calls[0][1] and world.llm.calls[1][1]
    # A confident answer is never abandoned; without a cut nothing is.
    known = world.ask("What is the capital of Japan?", owner="alice")
    assert known.decision is Decision.PARAMETRIC and known.signals.aborted_at is None
    later = calibration.created_at + timedelta(seconds=1)
    world.calibrations.save(replace(calibration, id="no-abort", abort_min_prob=None, created_at=later))
    whole = world.ask("What is the capital of Tokelau?", owner="alice", top_k=2)
    assert whole.parametric_answer == "I don't know" and whole.signals.aborted_at is None
    assert whole.decision is Decision.RETRIEVED and "signals" in whole.timings


def test_rare_words_retrieve_before_any_answer(world: World) -> None:
    world.ingest(CORPUS)
    calibration, _ = world.calibrate(world.labelled(), dataset="capitals")
    assert calibration.early_features == ["alpha"] and calibration.early_threshold == 0.5
    assert calibration.stats["early_retrieval_share"] == pytest.approx(4 / 12)  # tuvalu, niue, nauru, palau
    world.llm.calls.clear()
    query = world.ask("What is the capital of Tuvalu?", owner="alice", top_k=2)
    assert query.decision is Decision.RETRIEVED and query.answer == "Funafuti" and query.parametric_answer == ""
    assert query.signals.alpha == pytest.approx((3 * 5 + 1.0) / 6)  # "what is the capital of tuvalu"
    assert query.signals.early_estimate == 1.0 and query.signals.gece_estimate is None
    assert "parametric_answer" not in query.timings and {"early_signals", "retrieve"} <= set(query.timings)
    assert len(world.llm.calls) == 1 and world.llm.calls[0][1]  # one answer, from passages


def test_always_retrieve_skips_the_parametric_answer(world: World) -> None:
    world.ingest(CORPUS)
    query = world.ask("What is the capital of Niue?", owner="alice", retrieval="always")
    assert query.decision is Decision.RETRIEVED and query.answer == "Alofi" and query.parametric_answer == ""
    assert "parametric_answer" not in query.timings
    assert len(world.llm.calls) == 1


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"question": "   "}, InvalidParameters),
        ({"question": "x" * 2001}, RequestTooLarge),
        ({"question": "ok?", "top_k": 0}, InvalidParameters),
        ({"question": "ok?", "top_k": True}, InvalidParameters),
        ({"question": "ok?", "retrieval": "sometimes"}, InvalidParameters),
    ],
)
def test_bad_questions_are_refused_before_any_model_call(world: World, kwargs: dict, error: type) -> None:
    with pytest.raises(error):
        world.ask(owner="alice", **{"retrieval": "never", **kwargs})
    assert world.llm.calls == [] and world.queries.list().total == 0


def test_an_unreachable_index_fails_the_query_and_stores_nothing(world: World) -> None:
    world.index.unavailable = True
    with pytest.raises(IndexUnavailable):
        world.ask("What is the capital of Nauru?", owner="alice", retrieval="always")
    assert world.queries.list().total == 0


def test_reingesting_a_source_replaces_its_chunks(world: World) -> None:
    first = world.ingest(CORPUS)
    assert (first.documents, first.replaced) == (6, 0) and world.index.count() == first.chunks
    again = world.ingest([("tuvalu.md", "Tuvalu moved. Its capital is Vaiaku.")])
    assert again.replaced == 1
    hits = world.index.search(world.embedder.embed(["Tuvalu capital"], "query")[0], 1)
    assert "Vaiaku" in hits[0].text


def test_ingest_embeds_in_batches_across_documents_and_keeps_each_vector_with_its_chunk(world: World) -> None:
    calls: list[int] = []
    embed = world.embedder.embed

    def counted(texts: list[str], kind: str) -> list[list[float]]:
        calls.append(len(texts))
        return embed(texts, kind)  # type: ignore[arg-type]

    world.embedder.embed = counted  # type: ignore[method-assign,assignment]
    seen: list[tuple[int, int]] = []
    report = IngestDocuments(world.embedder, world.index, batch=4)(CORPUS, progress=lambda d, t: seen.append((d, t)))
    assert calls == [4, 2] and report.chunks == 6  # six one-chunk documents, not six calls
    assert seen == [(i, 6) for i in range(1, 7)]
    for question, country in COUNTRIES.items():  # each chunk is found by its own words
        [hit] = world.index.search(embed([f"{country} capital {TAIL[question]}"], "query")[0], 1)
        assert TAIL[question] in hit.text and hit.source == f"{country.lower()}.md"


def test_a_bad_document_stops_the_ingest_before_anything_is_stored(world: World) -> None:
    with pytest.raises(InvalidParameters, match="empty"):
        world.ingest([("a.md", "Fine text."), ("b.md", "  ")])
    assert world.index.count() == 0


def test_calibration_refuses_too_few_or_unlabelled_instances(world: World) -> None:
    with pytest.raises(InvalidParameters, match="at least"):
        world.calibrate(world.labelled()[:3], dataset="tiny")
    broken = [*world.labelled()[:9], LabelledQuestion("What is the capital of Chad?", [])]
    with pytest.raises(InvalidParameters, match="no reference"):
        world.calibrate(broken, dataset="broken")
    with pytest.raises(InvalidParameters, match="Unknown detector feature"):
        world.calibrate(world.labelled(), dataset="x", features=["popularity"])
    assert world.calibrations.latest(world.llm.name) is None


def test_youden_threshold_separates_and_falls_back_to_the_median() -> None:
    cut = youden_threshold([0.1, 0.2, 0.3, 0.8, 0.9], [False, False, False, True, True])
    assert 0.3 < cut < 0.8
    assert youden_threshold([1.0, 2.0, 3.0], [False, False, False]) == 2.0


@pytest.mark.parametrize(
    ("answer", "aliases", "expected"),
    [
        ("The capital is Kyiv.", ["Kyiv", "Kiev"], True),
        ("It is kiev", ["Kyiv", "Kiev"], True),
        ("Brasilia, of course", ["Brasília"], True),
        ("Parish", ["Paris"], False),
        ("", ["Paris"], False),
    ],
)
def test_answer_matching_folds_case_accents_and_whole_words(answer: str, aliases: list[str], expected: bool) -> None:
    assert answer_matches(answer, aliases) is expected


def test_the_early_decision_can_be_turned_off(world: World) -> None:
    world.ingest(CORPUS)
    world.calibrate(world.labelled(), dataset="capitals")
    query = world.ask("What is the capital of Tuvalu?", owner="alice", early=False)
    assert query.parametric_answer == "I don't know" and query.decision is Decision.RETRIEVED
    assert query.signals.gece_estimate == 1.0 and query.signals.early_estimate is None
    assert "early_signals" not in query.timings


def test_the_state_probe_reads_the_model_before_it_answers(world: World) -> None:
    detector = FakeDetector("state_probe")
    calibrate = CalibrateDetector(
        world.llm, world.embedder, world.words, FakeLexicon(), detector, world.calibrations, world.clock
    )
    ask = AskQuestion(
        world.llm, world.embedder, world.index, world.words, detector, world.calibrations, world.queries, world.clock
    )
    world.ingest(CORPUS)
    calibration, signals = calibrate(world.labelled(), dataset="capitals", gate="detector")
    assert calibration.probe["feature"] == "s0"  # the fake detector, fitted on the two-number states
    assert calibration.detector["feature"] == "state_probe"
    # Cross-fitted: every instance is scored by a probe that never saw it, and still on its side.
    by_question = {s.question: s for s in signals}
    assert all(by_question[q].state_probe < 0 for q in KNOWN) and all(by_question[q].state_probe > 0 for q in TAIL)
    assert by_question["What is the capital of Japan?"].state == [1.0, 0.0]

    world.llm.states.clear()
    known = ask("What is the capital of Japan?", owner="alice", early=False)
    assert known.decision is Decision.PARAMETRIC and known.signals.state_probe < 0  # type: ignore[operator]
    assert world.llm.states == ["What is the capital of Japan?"] and "question_state" in known.timings
    # Before any answer: the early detector reads the same probe and retrieves at once.
    world.llm.states.clear()
    world.llm.calls.clear()
    tail = ask("What is the capital of Tokelau?", owner="alice", top_k=1)
    assert tail.decision is Decision.RETRIEVED and tail.answer == "Nukunonu" and tail.parametric_answer == ""
    assert tail.signals.state_probe > 0 and tail.signals.early_estimate == 1.0  # type: ignore[operator]
    assert world.llm.states == ["What is the capital of Tokelau?"] and len(world.llm.calls) == 1
    assert "question_state" not in tail.timings and "early_signals" in tail.timings


def test_a_calibration_without_the_probe_does_not_read_the_state(world: World) -> None:
    world.calibrate(world.labelled(), dataset="capitals", features=["mean_token_prob", "alpha"])
    calibration = world.calibrations.latest(world.llm.name)
    assert calibration is not None and calibration.probe == {} and "state_probe" not in calibration.early_features
    world.llm.states.clear()
    query = world.ask("What is the capital of Japan?", owner="alice")
    assert query.signals.state_probe is None and world.llm.states == [] and "question_state" not in query.timings


def test_the_early_cut_is_the_decision_threshold_unless_a_precision_is_asked(world: World) -> None:
    at_threshold, _ = world.calibrate(world.labelled(), dataset="capitals", decision_threshold=0.3)
    assert at_threshold.early_threshold == 0.3
    # The fake's early scores are 0 or 1 and the four rare-word questions are all long-tail: the
    # lowest cut that precise lies halfway.
    precise, _ = world.calibrate(world.labelled(), dataset="capitals", decision_threshold=0.3, early_precision=0.9)
    assert precise.early_threshold == 0.5
    with pytest.raises(InvalidParameters, match="early_precision"):
        world.calibrate(world.labelled(), dataset="capitals", early_precision=1.5)


def test_the_model_reads_the_passage_about_the_question_and_the_reading_can_be_chosen(world: World) -> None:
    def ask_with(**options: object) -> AskQuestion:
        return AskQuestion(
            world.llm,
            world.embedder,
            world.index,
            world.words,
            FakeDetector(),
            world.calibrations,
            world.queries,
            world.clock,
            **options,  # type: ignore[arg-type]
        )

    world.ingest(CORPUS)
    query = world.ask("What is the capital of Tuvalu?", owner="alice", top_k=3, retrieval="always")
    assert len(query.passages) == 3 and "read" in query.timings
    assert len(world.llm.calls[-1][1]) == 3  # short passages: all three fit the default budget of 100 units
    ask_with(context_units=12)("What is the capital of Tuvalu?", "alice", top_k=3, retrieval="always")  # one passage
    question, read = world.llm.calls[-1]
    assert question == "What is the capital of Tuvalu?" and read == (
        "Tuvalu is a small island. Its capital is Funafuti.",
    )
    ask_with(reading="passages")("What is the capital of Tuvalu?", "alice", top_k=3, retrieval="always")
    assert world.llm.calls[-1][1] == tuple(p.text for p in query.passages)
    with pytest.raises(InvalidParameters, match="reading"):
        ask_with(reading="skim")


def test_calibration_chooses_the_gate_by_cross_validation_and_the_product_uses_it(world: World) -> None:
    """Here the answers' token probabilities separate wrong from right perfectly: the token-probability gate wins
    (ties go to the simplest), its cut leaves no wrong answer unretrieved, and the query decides by it."""
    world.ingest(CORPUS)
    calibration, signals = world.calibrator(world.labelled(), dataset="capitals")
    assert calibration.gate == "token_prob" and calibration.stats["gate_cv_auroc_token_prob"] == 1.0
    assert {"gate_cv_auroc_detector", "gate_cv_auroc_combined"} <= set(calibration.stats)
    lowest = {s.question: s.min_token_prob for s in signals}
    cut = 1.0 - (calibration.gate_threshold or 0.0)  # the lowest token probability that is still trusted
    assert max(lowest[q] for q in TAIL) < cut < min(lowest[q] for q in KNOWN)
    assert calibration.abort_min_prob == pytest.approx(cut)
    assert world.calibrations.latest(world.llm.name).gate == "token_prob"  # type: ignore[union-attr]

    known = world.ask("What is the capital of Japan?", owner="alice")
    assert known.decision is Decision.PARAMETRIC and known.signals.gate == "token_prob"
    assert known.signals.calibration_id == calibration.id and known.signals.threshold == pytest.approx(cut)
    assert "signals" not in known.timings  # no gradient, no neighbours: the gate needs none
    tail = world.ask("What is the capital of Tokelau?", owner="alice", early=False)
    assert tail.decision is Decision.RETRIEVED and tail.answer == "Nukunonu"
    assert (tail.signals.min_token_prob or 1.0) < (tail.signals.threshold or 0.0)
    with pytest.raises(InvalidParameters, match="gate"):
        world.calibrator(world.labelled(), dataset="capitals", gate="coin")


def test_the_recall_cut_leaves_at_most_the_budget_of_wrong_answers_unretrieved() -> None:
    from app.usecases.calibrate_detector import recall_cut

    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    wrong = [False, False, True, False, True, True]
    assert recall_cut(scores, wrong, 0.0) == pytest.approx(0.25)  # skip 0.1 and 0.2, retrieve from 0.3 up
    assert recall_cut(scores, wrong, 1 / 6) == pytest.approx(0.45)  # one wrong answer may stay unretrieved
    assert recall_cut([0.5, 0.7], [True, False], 0.0) < 0.5  # the lowest is wrong: retrieve everything
