"""DAFNet and MEND on a tiny random Llama: the network's arithmetic, the editor's state, meta-training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from app.adapters.editing.dafnet import DafnetEditor, HyperNetworks, fold
from app.adapters.editing.encoding import encode, pad_id
from app.adapters.editing.hooks import DeltaHooks, last_mlp_modules
from app.adapters.editing.network import NetworkConfig, causal_mask, fuse
from app.adapters.editing.predictions import accuracy, teacher_forced
from app.adapters.editing.signal import editing_signal, full_target_logits
from app.adapters.transformers.llm import TransformersLanguageModel
from app.adapters.transformers.tiny import build_tiny_llama
from app.domain.edits import EditorNotTrained, EditSpec, LocalityProbe, RollbackOutOfRange
from app.lab.edits.train import EditTrainConfig, EditTrainer, TailRunner, draw_sequence_length

SMALL = NetworkConfig(inner_dim=64, ffn_dim=64, outer_dim=32, score_dim=16)
COUNTRIES = ["France", "Germany", "Italy", "Spain", "Japan", "China", "Peru", "Chile", "Kenya", "Egypt", "Cuba", "Mali"]
TARGETS = ["Paris", "Berlin", "Rome", "Madrid", "Tokyo", "Beijing", "the market", "the teacher", "the river"]


def specs(n: int, offset: int = 0) -> list[EditSpec]:
    out = []
    for i in range(n):
        country = COUNTRIES[(i + offset) % len(COUNTRIES)]
        out.append(
            EditSpec(
                f"What is the capital of {country}?",
                TARGETS[(3 * i + offset) % len(TARGETS)],
                subject=country,
                rephrases=(f"Which city is the capital of {country}?",),
                locality=(LocalityProbe("Who wrote the book?", "A teacher from the north"),),
            )
        )
    return out


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_tiny_llama(str(tmp_path_factory.mktemp("tiny-llama")), seed=0)


@pytest.fixture()
def lm(tiny_path: str) -> TransformersLanguageModel:
    return TransformersLanguageModel(tiny_path)


def train_config(editor: str = "dafnet", steps: int = 300, **overrides: Any) -> EditTrainConfig:
    settings: dict[str, Any] = {
        "blocks": 1,
        "lr": 1e-3,
        "init_edit_lr": 1e-2,
        "edit_lr_lr": 1e-3,
        "max_sequence": 6,
        "patience": 20,
        **overrides,
    }
    return EditTrainConfig(editor=editor, steps=steps, network=SMALL, **settings)


@pytest.fixture(scope="module")
def checkpoints(tiny_path: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """DAFNet and MEND meta-trained briefly on the tiny model (each in a few seconds)."""
    root = tmp_path_factory.mktemp("networks")
    out = {}
    for editor in ("dafnet", "mend"):
        lm = TransformersLanguageModel(tiny_path)
        trainer = EditTrainer(
            lm, specs(24), ["The river flows through the old town past the market."], train_config(editor)
        )
        trainer.run()
        trainer.export(root / editor)
        trainer.close()
        out[editor] = root / editor
    return out


def test_tail_runner_equals_the_full_model(lm: TransformersLanguageModel) -> None:
    batch = [encode(lm, s.prompt, s.target) for s in specs(3)]
    tail = TailRunner(lm.model, 1, pad_id(lm.tokenizer))
    assert torch.equal(tail.target_logits(tail.prefix(batch), batch), full_target_logits(lm.model, batch, 0))


def test_signal_is_taken_on_the_original_weights(lm: TransformersLanguageModel) -> None:
    names = last_mlp_modules(lm.model, 1)
    hooks = DeltaHooks(lm.model, names)
    batch = [encode(lm, "What is the capital of Peru?", "Lima")]
    plain = editing_signal(lm.model, hooks.modules, batch, 0)
    hooks.deltas = [torch.randn(m.in_features, m.out_features) for m in hooks.modules]
    with hooks.disabled():
        again = editing_signal(lm.model, hooks.modules, batch, 0)
    shifted = editing_signal(lm.model, hooks.modules, batch, 0)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(plain[0], again[0], strict=True))
    assert not torch.equal(plain[0][2][1], shifted[0][2][1])  # with the deltas on, the gradient differs
    hooks.remove()
    assert all(not m.weight.requires_grad for m in hooks.modules)


def test_gates_fuse_into_weights_and_decay() -> None:
    gate = torch.tensor([1.0, 0.5, 0.25])
    weights, decay = fuse(gate, 3, torch.device("cpu"))
    assert torch.allclose(weights, torch.tensor([1.0 * 0.5 * 0.75, 0.5 * 0.75, 0.25]))
    assert float(decay) == pytest.approx(0.0)
    ones, no_decay = fuse(None, 2, torch.device("cpu"))
    assert torch.equal(ones, torch.ones(2)) and float(no_decay) == 1.0
    mask = causal_mask(2, 2, torch.device("cpu"))
    assert mask[0].tolist() == [0.0, 0.0, 0.0, float("-inf")] and mask[1].tolist() == [0.0] * 4


@pytest.mark.parametrize("inter_edit", [True, False])
def test_edits_at_once_equal_edits_one_by_one(lm: TransformersLanguageModel, inter_edit: bool) -> None:
    """What training does (N edits in one pass, causal mask) is what editing does (one by one, the bank)."""
    torch.manual_seed(0)
    hooks = DeltaHooks(lm.model, last_mlp_modules(lm.model, 1))
    config = NetworkConfig(**{**SMALL.to_dict(), "inter_edit": inter_edit})
    nets = HyperNetworks(hooks.modules, config).eval()
    batch = [encode(lm, s.prompt, s.target) for s in specs(4)]
    signal = editing_signal(lm.model, hooks.modules, batch, 0)
    with torch.no_grad():
        for i in range(len(hooks.modules)):
            net = nets.network(i)
            x = torch.cat([torch.cat(signal[e][i], -1) for e in range(4)])
            lengths = [signal[e][i][0].shape[0] for e in range(4)]
            x1, x2, _, decay = net(x, lengths, net.empty_banks(x.device), nets.modes[i])
            at_once = fold(None, decay, x1, x2)
            one_by_one, banks = None, net.empty_banks(x.device)
            for e in range(4):
                y1, y2, reps, d = net(torch.cat(signal[e][i], -1), [lengths[e]], banks, nets.modes[i])
                one_by_one = fold(one_by_one, d, y1, y2)
                banks = [torch.cat([b, r], 0) for b, r in zip(banks, reps, strict=True)]
            assert one_by_one is not None
            assert torch.allclose(at_once, one_by_one, atol=1e-5, rtol=1e-4)
    hooks.remove()


def test_meta_training_resumes_exactly(tiny_path: str, tmp_path: Path) -> None:
    data, plain = specs(12), ["The river flows through the old town."]
    straight = EditTrainer(TransformersLanguageModel(tiny_path), data, plain, train_config(steps=6))
    straight.run()
    first = EditTrainer(TransformersLanguageModel(tiny_path), data, plain, train_config(steps=6))
    first.run(should_stop=lambda: first.step >= 3)
    first.save_checkpoint(tmp_path / "ck.pt")
    resumed = EditTrainer(TransformersLanguageModel(tiny_path), data, plain, train_config(steps=6))
    assert resumed.load_checkpoint(tmp_path / "ck.pt") and resumed.step == 3
    resumed.run()
    for (name, a), b in zip(straight.nets.state_dict().items(), resumed.nets.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    other = EditTrainer(TransformersLanguageModel(tiny_path), data, plain, train_config(steps=6, lr=1e-2))
    with pytest.raises(Exception, match=r"other settings \(lr\)"):
        other.load_checkpoint(tmp_path / "ck.pt")
    behind = EditTrainer(TransformersLanguageModel(tiny_path), data, plain, train_config(steps=2))
    with pytest.raises(Exception, match="past the 2 steps"):
        behind.load_checkpoint(tmp_path / "ck.pt")


def test_meta_training_extends_to_more_steps(tiny_path: str, tmp_path: Path) -> None:
    """A finished run resumed with more steps is the longer run it would have been, bit for bit."""
    data, plain = specs(12), ["The river flows through the old town."]
    straight = EditTrainer(TransformersLanguageModel(tiny_path), data, plain, train_config(steps=7))
    straight.run()
    short = EditTrainer(TransformersLanguageModel(tiny_path), data, plain, train_config(steps=4))
    short.run()
    short.save_checkpoint(tmp_path / "ck.pt")
    longer = EditTrainer(TransformersLanguageModel(tiny_path), data, plain, train_config(steps=7))
    assert longer.load_checkpoint(tmp_path / "ck.pt") and longer.step == 4
    longer.run()
    assert longer.step == 7 and longer.curriculum == straight.curriculum
    for (name, a), b in zip(straight.nets.state_dict().items(), longer.nets.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_sequence_lengths_are_drawn_uniformly_or_log_uniformly() -> None:
    import math
    import random

    rng = random.Random(0)
    draws = 40_000
    uniform = [draw_sequence_length(rng, 100, "uniform") for _ in range(draws)]
    logu = [draw_sequence_length(rng, 100, "log-uniform") for _ in range(draws)]
    assert min(uniform) == min(logu) == 1 and max(uniform) == max(logu) == 100
    assert abs(uniform.count(1) / draws - 0.01) < 0.003
    assert abs(logu.count(1) / draws - math.log(2) / math.log(101)) < 0.01  # about 15 %
    assert abs(sum(n <= 10 for n in logu) / draws - math.log(11) / math.log(101)) < 0.01  # about half
    assert abs(sum(n > 50 for n in logu) / draws - (1 - math.log(51) / math.log(101))) < 0.01
    assert all(draw_sequence_length(rng, 1, "log-uniform") == 1 for _ in range(50))


def test_log_uniform_training_runs_and_unknown_sampling_is_refused(tiny_path: str) -> None:
    import random

    data, plain = specs(12), ["The river flows through the old town."]
    lm = TransformersLanguageModel(tiny_path)
    trainer = EditTrainer(lm, data, plain, train_config(steps=8, sequence_sampling="log-uniform", start_sequence=6))
    seen: list[int] = []
    trainer.run(progress=lambda step, total, info: seen.append(int(info["n"])))
    trainer.close()
    # each step's N is the log-uniform draw of that step's own generator (seed 0), capped by the curriculum (6)
    expected = [draw_sequence_length(random.Random(step), 6, "log-uniform") for step in range(8)]
    assert seen == expected and set(seen) <= set(range(1, 7))
    assert expected != [random.Random(step).randint(1, 6) for step in range(8)]  # not the uniform draws
    with pytest.raises(Exception, match="sequence_sampling must be one of uniform, log-uniform"):
        EditTrainer(lm, data, plain, train_config(steps=1, sequence_sampling="geometric"))


def test_checkpoint_without_newer_settings_resumes(tiny_path: str, tmp_path: Path) -> None:
    """A checkpoint written before a setting existed resumes when that setting is at its default."""
    data, plain = specs(12), ["The river flows through the old town."]
    first = EditTrainer(TransformersLanguageModel(tiny_path), data, plain, train_config(steps=2))
    first.run()
    first.save_checkpoint(tmp_path / "ck.pt")
    state = torch.load(tmp_path / "ck.pt", weights_only=False)
    for key in ("extra_cities", "start_sequence", "sequence_sampling"):
        del state["config"][key]
    torch.save(state, tmp_path / "ck.pt")
    again = EditTrainer(TransformersLanguageModel(tiny_path), data, plain, train_config(steps=3))
    assert again.load_checkpoint(tmp_path / "ck.pt") and again.step == 2
    other = EditTrainer(TransformersLanguageModel(tiny_path), data, plain, train_config(steps=3, extra_cities=5))
    with pytest.raises(Exception, match=r"other settings \(extra_cities\)"):
        other.load_checkpoint(tmp_path / "ck.pt")


def test_warm_start_begins_from_exported_networks(tiny_path: str, checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """A new run (its own loss weights, its curriculum starting high) starts from trained networks."""
    lm = TransformersLanguageModel(tiny_path)
    trainer = EditTrainer(lm, specs(12), ["The river flows."], train_config(steps=2, loc_weight=0.6, start_sequence=4))
    assert trainer.curriculum == 4
    info = trainer.warm_start(checkpoints["dafnet"])
    assert info["editor"] == "dafnet"
    exported = DafnetEditor(TransformersLanguageModel(tiny_path), checkpoints["dafnet"]).nets.state_dict()
    for name, value in trainer.nets.state_dict().items():
        assert torch.equal(value, exported[name]), name
    trainer.run()
    assert trainer.step == 2
    moved = [n for n, v in trainer.nets.state_dict().items() if not torch.equal(v, exported[n])]
    assert moved  # it trains on from there
    trainer.close()
    with pytest.raises(Exception, match="other modules"):
        EditTrainer(lm, specs(4), [], train_config(steps=1, blocks=2)).warm_start(checkpoints["dafnet"])
    with pytest.raises(EditorNotTrained):
        EditTrainer(lm, specs(4), [], train_config(steps=1)).warm_start(tmp_path / "nothing")


@pytest.mark.parametrize("editor", ["dafnet", "mend"])
def test_trained_editor_makes_the_edit(
    lm: TransformersLanguageModel, checkpoints: dict[str, Path], editor: str
) -> None:
    config = json.loads((checkpoints[editor] / "config.json").read_text())
    assert config["network"]["inter_edit"] is (editor == "dafnet") and config["steps"] == 300
    edits = specs(4)
    encoded = [encode(lm, s.prompt, s.target) for s in edits]
    before = accuracy(teacher_forced(lm.model, encoded, 0), encoded)
    original = full_target_logits(lm.model, encoded, 0)
    instance = DafnetEditor(lm, checkpoints[editor], editor)
    instance.apply(edits[0])
    single = accuracy(teacher_forced(lm.model, encoded[:1], 0), encoded[:1])
    assert single > before + 0.5  # the tiny model never says these targets; the edited one does
    for spec in edits[1:]:
        instance.apply(spec)
    assert instance.applied == 4 and accuracy(teacher_forced(lm.model, encoded, 0), encoded) > before
    instance.rollback(0)
    assert torch.equal(full_target_logits(lm.model, encoded, 0), original)
    with pytest.raises(RollbackOutOfRange):
        instance.rollback(1)


def test_dafnet_gate_decays_earlier_edits(lm: TransformersLanguageModel, checkpoints: dict[str, Path]) -> None:
    instance = DafnetEditor(lm, checkpoints["dafnet"])
    for spec in specs(3):
        instance.apply(spec)
    decays = [float(r[f"{i}.decay"]) for r in instance.records for i in range(3)]
    assert all(0.0 <= d <= 1.0 for d in decays)
    assert all(float(instance.records[0][f"{i}.decay"]) == 0.0 for i in range(3))  # nothing before the first


def test_missing_or_foreign_checkpoint_names_the_command(
    lm: TransformersLanguageModel, checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(EditorNotTrained, match="atelier edits train --editor dafnet"):
        DafnetEditor(lm, tmp_path / "nothing")
    with pytest.raises(EditorNotTrained, match="atelier edits train --editor mend"):
        DafnetEditor(lm, checkpoints["dafnet"], "mend")
