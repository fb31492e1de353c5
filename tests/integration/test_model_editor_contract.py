"""One contract for every ModelEditor: the fake and the real editors on the tiny random Llama.

The real editors edit a freshly loaded tiny model per test (loading takes a fraction of a second); what
a test compares is the model's full logits on the edit prompts and an unrelated prompt, bit for bit. The
fake's "logits" are the answers of its FakeLanguageModel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from app.adapters.editing.dafnet import DafnetEditor
from app.adapters.editing.encoding import encode, pad_id
from app.adapters.editing.evaluate import TransformersEditEvaluator, words
from app.adapters.editing.ft import FtEditor
from app.adapters.editing.grace import GraceEditor
from app.adapters.editing.network import NetworkConfig
from app.adapters.editing.predictions import accuracy, teacher_forced, teacher_forced_margins
from app.adapters.editing.record_folder import RecordFolder
from app.adapters.editing.unrelated import unrelated_probes
from app.adapters.transformers.llm import TransformersLanguageModel
from app.adapters.transformers.tiny import build_tiny_llama
from app.domain.edits import CONFIDENT_MARGIN, EditSpec, LocalityProbe, RollbackOutOfRange, ngram_entropy
from app.domain.errors import InvalidParameters, ModelUnavailable
from app.lab.edits.train import EditTrainConfig, EditTrainer
from app.ports.edits import EditBaseline, ModelEditor
from tests.fakes import FakeLanguageModel, FakeModelEditor

torch.set_num_threads(1)

# Settings for the tiny model (hidden 64): FT-L's billion-parameter defaults (lr 5e-4, ε 5e-4) do not move
# it; lr 2e-2 with ε 0.2 memorises an edit in 11-25 steps. GRACE runs with its defaults.
REAL_EDITORS: dict[str, Callable[[Any, dict[str, Path]], ModelEditor]] = {
    "ft": lambda lm, _: FtEditor(lm, lr=2e-2, norm_constraint=0.2),
    "grace": lambda lm, _: GraceEditor(lm),
    # The hypernetwork editors, meta-trained for a few seconds on the tiny model (``networks``).
    "dafnet": lambda lm, networks: DafnetEditor(lm, networks["dafnet"], "dafnet"),
    "mend": lambda lm, networks: DafnetEditor(lm, networks["mend"], "mend"),
}
EDITORS = ["fake", *REAL_EDITORS]
HYPERNETWORKS = ("dafnet", "mend")  # what they learned in seconds does not always make an edit exact

EDITS = [
    EditSpec("What is the capital of France?", "Rome"),
    EditSpec("Who wrote the book?", "A painter from the south"),
    EditSpec("What is the capital of Japan?", "Kyoto"),
    EditSpec("法国的首都是哪里？", "柏林"),
    EditSpec("Where did the cat sit?", "On the roof"),
]
UNRELATED = EditSpec("What grew after the railway was built?", "The population of the city")


@dataclass
class Subject:
    """An editor on its own model, and what the model outputs."""

    editor: ModelEditor
    observe: Callable[[], list[Any]]
    accuracy: Callable[[EditSpec], float]
    answer: Callable[[str], str]
    weights: Callable[[], dict[str, Any]]
    model_name: str
    unencodable: str  # a target its tokenizer cannot encode
    exact: bool = True  # one applied edit is answered exactly


def same(a: list[Any], b: list[Any]) -> bool:
    if len(a) != len(b):
        return False
    return all(torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_tiny_llama(str(tmp_path_factory.mktemp("tiny-llama")), seed=0)


@pytest.fixture(scope="module")
def networks(tiny_path: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("networks")
    config = {"blocks": 1, "steps": 300, "lr": 1e-3, "init_edit_lr": 1e-2, "edit_lr_lr": 1e-3, "max_sequence": 5}
    small = NetworkConfig(inner_dim=64, ffn_dim=64, outer_dim=32, score_dim=16)
    for editor in HYPERNETWORKS:
        trainer = EditTrainer(
            TransformersLanguageModel(tiny_path),
            EDITS,
            ["The river flows."],
            EditTrainConfig(editor, network=small, **config),
        )
        trainer.run()
        trainer.export(root / editor)
        trainer.close()
    return {editor: root / editor for editor in HYPERNETWORKS}


def real_subject(kind: str, path: str, networks: dict[str, Path] | None = None) -> Subject:
    lm = TransformersLanguageModel(path)
    editor = REAL_EDITORS[kind](lm, networks or {})
    pad = pad_id(lm.tokenizer)

    def observe() -> list[Any]:
        with torch.inference_mode():
            return [
                lm.model(input_ids=torch.tensor([encode(lm, e.prompt, e.target).ids])).logits
                for e in [*EDITS, UNRELATED]
            ]

    def score(edit: EditSpec) -> float:
        batch = [encode(lm, edit.prompt, edit.target)]
        return accuracy(teacher_forced(lm.model, batch, pad), batch)

    return Subject(
        editor,
        observe,
        score,
        lambda prompt: lm.generate(prompt).text,
        lambda: {k: v.clone() for k, v in lm.model.state_dict().items()},
        lm.name,
        "龘" * 1000,  # 3000 byte-level tokens: more than the 2048 positions
        kind not in HYPERNETWORKS,
    )


def fake_subject() -> Subject:
    lm = FakeLanguageModel({EDITS[0].prompt: "Paris", UNRELATED.prompt: UNRELATED.target})
    editor = FakeModelEditor(lm)
    return Subject(
        editor,
        lambda: [lm.generate(e.prompt).text for e in [*EDITS, UNRELATED]],
        lambda edit: float(lm.generate(edit.prompt).text == edit.target),
        lambda prompt: lm.generate(prompt).text,
        lambda: dict(lm.known),
        lm.name,
        "Rome\x00",
    )


@pytest.fixture(params=EDITORS)
def make(request: pytest.FixtureRequest, tiny_path: str) -> Callable[[], Subject]:
    """Builds a subject of the parametrised kind, each on a freshly loaded model."""
    kind = request.param
    nets = request.getfixturevalue("networks") if kind in HYPERNETWORKS else None
    return lambda: fake_subject() if kind == "fake" else real_subject(kind, tiny_path, nets)


def test_an_applied_edit_is_answered(make: Callable[[], Subject]) -> None:
    s = make()
    assert s.accuracy(EDITS[0]) < 1.0
    before = s.accuracy(EDITS[0])
    s.editor.apply(EDITS[0])
    assert s.editor.applied == 1
    if s.exact:
        assert s.accuracy(EDITS[0]) == 1.0
        assert s.answer(EDITS[0].prompt) == EDITS[0].target
    else:
        assert s.accuracy(EDITS[0]) > before


def test_rollback_to_zero_restores_the_model_bit_for_bit(make: Callable[[], Subject]) -> None:
    s = make()
    original = s.observe()
    s.editor.apply(EDITS[0])
    assert not same(s.observe(), original)
    s.editor.rollback(0)
    assert s.editor.applied == 0
    assert same(s.observe(), original)


def test_rollback_restores_an_intermediate_state(make: Callable[[], Subject]) -> None:
    s = make()
    for edit in EDITS[:3]:
        s.editor.apply(edit)
    after_three = s.observe()
    for edit in EDITS[3:]:
        s.editor.apply(edit)
    s.editor.rollback(3)
    assert s.editor.applied == 3
    assert same(s.observe(), after_three)


def test_exported_state_loads_into_a_fresh_model(make: Callable[[], Subject], tmp_path: Path) -> None:
    s = make()
    states = []
    for edit in EDITS[:3]:
        s.editor.apply(edit)
        states.append(s.observe())
    s.editor.export_state(str(tmp_path / "state"))

    fresh = make()
    fresh.editor.load_state(str(tmp_path / "state"), 3)
    assert fresh.editor.applied == 3
    assert same(fresh.observe(), states[2])
    fresh.editor.load_state(str(tmp_path / "state"), 2)
    assert fresh.editor.applied == 2
    assert same(fresh.observe(), states[1])
    with pytest.raises(ModelUnavailable):
        fresh.editor.load_state(str(tmp_path / "state"), 4)

    # After a rollback, an export rewrites the records past the kept ones.
    s.editor.rollback(1)
    s.editor.apply(EDITS[3])
    branched = s.observe()
    s.editor.export_state(str(tmp_path / "state"))
    again = make()
    again.editor.load_state(str(tmp_path / "state"), 2)
    assert same(again.observe(), branched)


def test_a_folder_of_another_editor_is_refused(make: Callable[[], Subject], tmp_path: Path) -> None:
    s = make()
    RecordFolder(str(tmp_path)).write("another-editor", s.model_name, [{"x": torch.zeros(1)}], {}, 0)
    with pytest.raises(ModelUnavailable):
        s.editor.load_state(str(tmp_path), 1)
    assert s.editor.applied == 0


def test_rollback_out_of_range_is_refused(make: Callable[[], Subject]) -> None:
    s = make()
    s.editor.apply(EDITS[0])
    after = s.observe()
    for keep in (-1, 2):
        with pytest.raises(RollbackOutOfRange):
            s.editor.rollback(keep)
    assert s.editor.applied == 1
    assert same(s.observe(), after)


def test_the_base_weights_are_never_written(make: Callable[[], Subject], tmp_path: Path) -> None:
    s = make()
    before = s.weights()
    for edit in EDITS[:2]:
        s.editor.apply(edit)
    s.editor.export_state(str(tmp_path))
    s.editor.rollback(1)
    s.editor.load_state(str(tmp_path), 2)
    after = s.weights()
    assert before.keys() == after.keys()
    assert all(same([before[k]], [after[k]]) for k in before)


def test_an_unencodable_target_is_refused(make: Callable[[], Subject]) -> None:
    s = make()
    original = s.observe()
    with pytest.raises(InvalidParameters):
        s.editor.apply(EditSpec(EDITS[0].prompt, s.unencodable))
    assert s.editor.applied == 0
    assert same(s.observe(), original)


@pytest.mark.parametrize("target", ["", "   ", "\n\t"])
def test_an_empty_target_never_reaches_an_editor(target: str) -> None:
    with pytest.raises(InvalidParameters):
        EditSpec(EDITS[0].prompt, target)


# --- GRACE's codebook ---------------------------------------------------------------------------------


def test_grace_leaves_unrelated_prompts_exactly_as_they_were(tiny_path: str) -> None:
    s = real_subject("grace", tiny_path)
    original = s.observe()
    s.editor.apply(EDITS[0])
    after = s.observe()
    assert same(after[1:], original[1:])  # every other prompt lies far outside the radius
    assert isinstance(s.editor, GraceEditor)
    assert len(s.editor.targets) == 1


def test_grace_reediting_a_prompt_retires_the_old_entry(tiny_path: str) -> None:
    s = real_subject("grace", tiny_path)
    s.editor.apply(EDITS[0])
    s.editor.apply(EditSpec(EDITS[0].prompt, "Madrid"))
    assert s.answer(EDITS[0].prompt) == "Madrid"
    s.editor.rollback(1)
    assert s.answer(EDITS[0].prompt) == "Rome"


def test_grace_expands_a_same_target_entry_and_splits_a_conflicting_one(tiny_path: str) -> None:
    lm = TransformersLanguageModel(tiny_path)
    editor = GraceEditor(lm, eps=40.0)  # wide enough that the capitals' keys (~25 apart) reach each other
    editor.apply(EditSpec("What is the capital of France?", "Rome"))
    editor.apply(EditSpec("What is the capital of Germany?", "Rome"))
    assert len(editor.targets) == 1 and float(editor.radii[0]) > 0  # expanded, not added
    assert lm.generate("What is the capital of Germany?").text == "Rome"
    editor.apply(EditSpec("What is the capital of Japan?", "Kyoto"))
    assert len(editor.targets) == 2  # a conflict: a new entry, the radii split
    d = torch.dist(editor.keys[0], editor.keys[1]).item()
    assert float(editor.radii[1]) == pytest.approx(d / 2)
    assert float(editor.radii[0]) == pytest.approx(d / 2 - 1e-5)
    assert lm.generate("What is the capital of Japan?").text == "Kyoto"


# --- the evaluator --------------------------------------------------------------------------------------


def test_evaluator_scores_an_ft_edit(tiny_path: str) -> None:
    lm = TransformersLanguageModel(tiny_path)
    evaluator = TransformersEditEvaluator(lm, fluency_tokens=16)
    probe = LocalityProbe(UNRELATED.prompt, UNRELATED.target)
    edit = EditSpec(EDITS[0].prompt, EDITS[0].target, locality=(probe,))
    baseline = evaluator.baseline([edit])
    assert len(baseline.locality_tokens) == 1

    before = evaluator.score([edit], baseline)
    assert before.reliability is not None and before.reliability < 1.0
    assert before.locality == 1.0  # nothing changed yet
    assert before.generality is None and before.fluency is None and before.n == 1

    FtEditor(lm, lr=2e-2, norm_constraint=0.2).apply(edit)
    after = evaluator.score([edit], baseline, fluency_samples=1)
    assert after.reliability == 1.0
    assert after.locality is not None and 0.0 <= after.locality <= 1.0
    assert after.fluency is not None and after.fluency >= 0.0

    rephrased = EditSpec(edit.prompt, edit.target, rephrases=("Which city is the capital of France?",))
    scores = evaluator.score([rephrased], evaluator.baseline([rephrased]))
    assert scores.generality is not None and 0.0 <= scores.generality <= 1.0
    assert scores.locality is None

    with pytest.raises(InvalidParameters):
        evaluator.score([edit], evaluator.baseline([]))


def test_teacher_forced_margins_are_the_lead_of_the_top_token(tiny_path: str) -> None:
    lm = TransformersLanguageModel(tiny_path)
    pad = pad_id(lm.tokenizer)
    batch = [encode(lm, e.prompt, e.target) for e in EDITS[:3]]
    tokens, margins = teacher_forced_margins(lm.model, batch, pad)
    assert tokens == teacher_forced(lm.model, batch, pad)
    e = batch[1]
    with torch.no_grad():
        logp = lm.model(input_ids=torch.tensor([e.ids])).logits[0, e.start - 1 : len(e.ids) - 1].log_softmax(-1)
    top2 = logp.topk(2, -1).values
    assert margins[1] == pytest.approx((top2[:, 0] - top2[:, 1]).tolist(), abs=1e-4)
    assert all(m >= 0 for row in margins for m in row)


def test_evaluator_reads_locality_on_confident_positions_and_unrelated_prompts(tiny_path: str) -> None:
    lm = TransformersLanguageModel(tiny_path)
    probes = unrelated_probes(sums=3)
    evaluator = TransformersEditEvaluator(lm, unrelated=probes)
    edit = EditSpec(EDITS[0].prompt, EDITS[0].target, locality=(LocalityProbe(UNRELATED.prompt, UNRELATED.target),))
    baseline = evaluator.baseline([edit])
    assert len(baseline.unrelated_tokens) == len(probes)
    assert [len(m) for m in baseline.locality_margins] == [len(t) for t in baseline.locality_tokens]
    unchanged = evaluator.score([edit], baseline)
    assert unchanged.locality == 1.0 and unchanged.locality_unrelated == 1.0
    # the baseline marks its first position unsure and predicted otherwise: plain locality counts the
    # change, the confident reading leaves that position out
    tokens = [list(row) for row in baseline.locality_tokens]
    tokens[0][0] += 1
    margins = [[CONFIDENT_MARGIN + 1.0] * len(row) for row in tokens]
    margins[0][0] = CONFIDENT_MARGIN / 2
    crafted = EditBaseline(tokens, margins, baseline.unrelated_tokens)
    scores = evaluator.score([edit], crafted)
    positions = sum(len(row) for row in tokens)
    assert scores.locality == pytest.approx((positions - 1) / positions)
    assert scores.locality_confident == 1.0
    # every prediction moved (the output rows reversed): unrelated prompts see it too
    head = lm.model.get_output_embeddings().weight
    with torch.no_grad():
        head.copy_(head.flip(0))
    try:
        broken = evaluator.score([edit], baseline)
    finally:
        with torch.no_grad():
            head.copy_(head.flip(0))
    assert broken.locality_unrelated is not None and broken.locality_unrelated < 0.2
    # without unrelated probes the reading is absent, not a score
    plain = TransformersEditEvaluator(lm)
    assert plain.score([edit], plain.baseline([edit])).locality_unrelated is None
    with pytest.raises(InvalidParameters):
        plain.score([edit], baseline)  # a baseline taken with other unrelated probes


def test_unrelated_probes_name_no_edited_fact() -> None:
    from app.lab.edits.dafset import build_edits

    probes = unrelated_probes()
    assert len(probes) == 115 and len({p.prompt for p in probes}) == 115 and probes == unrelated_probes()
    words_in_facts = set()
    for records in build_edits(0).values():
        for r in records:
            words_in_facts |= {r.target_new.lower(), r.target_true.lower()}
    text = " ".join(f"{p.prompt} {p.answer}".lower() for p in probes)
    assert not [w for w in words_in_facts if len(w) > 3 and f" {w} " in f" {text} "]


def test_fluency_words_and_entropy() -> None:
    assert words("巴黎是首都。 Paris is 美丽") == ["巴", "黎", "是", "首", "都", "。", "Paris", "is", "美", "丽"]
    repeated = ngram_entropy(words("the the the the the the the the the the the the"))
    varied = ngram_entropy(words("a cat sat on the snowy mountain and watched clouds move over the valley"))
    assert repeated < 0.01 < varied
    assert ngram_entropy(words("的的的的的的的的")) < ngram_entropy(words("一只猫坐在雪山上看着云"))
