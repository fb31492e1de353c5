"""The demo world's SFT rewriter: data (generated and the InstructPE JSON), a short training run, and
serving it in a session (``prompt_rewriter = "sft"``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.adapters.storage.artifacts import sft_dir
from app.demo_world.parsing import parse_caption
from app.domain.errors import InvalidParameters, ModelUnavailable
from app.entrypoints.library import Atelier
from app.lab.prompts.sft import SftConfig, generate_records, load_instructpe, train_sft

TINY = {
    "steps": 40,
    "warmup": 5,
    "lr": 3e-3,
    "records": 300,
    "held_out": 5,
    "hidden": 32,
    "layers": 1,
    "heads": 2,
    "mlp": 64,
    "vocab": 400,
}


def test_generated_records_are_instructpe_shaped_and_read_back() -> None:
    records = generate_records(20, seed=3)
    assert records == generate_records(20, seed=3)  # deterministic
    for r in records:
        assert parse_caption(r.beautified_source_prompt).objects and parse_caption(r.beautified_target_prompt)
        assert r.instruction and r.source_prompt


def test_instructpe_json_loader(tmp_path: Path) -> None:
    rows = [
        {
            "source_prompt": "a cat",
            "instruction": "make it red",
            "beautified_source_prompt": "a cat, 4k",
            "beautified_target_prompt": "a red cat, 4k",
            "extra": 1,
        }
    ]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r) for r in rows * 2))
    assert load_instructpe(tmp_path / "a.json")[0].beautified_target_prompt == "a red cat, 4k"
    assert len(load_instructpe(tmp_path / "b.jsonl")) == 2
    (tmp_path / "bad.json").write_text(json.dumps([{"source_prompt": "x"}]))
    with pytest.raises(InvalidParameters, match="lacks"):
        load_instructpe(tmp_path / "bad.json")


def test_a_short_training_run_lowers_the_loss_and_is_served(tmp_path: Path) -> None:
    seen: list[float] = []
    summary = train_sft(sft_dir(str(tmp_path)), SftConfig(**TINY), progress=lambda s, n, i: seen.append(i["loss"]))
    assert len(seen) == 40 and seen[-1] < seen[0] * 0.8  # it learns (the EMA of the target NLL)
    assert 0.0 <= summary["held_out_exact_match"] <= 1.0 and (sft_dir(str(tmp_path)) / "training.json").is_file()
    with Atelier.open(data_dir=str(tmp_path), profile="test", prompt_rewriter="sft") as atelier:
        assert atelier.container.prompt_rewriter().name == "sft"
        session = atelier.prompts.start("一个红色的圆形在中间")
        turn = atelier.prompts.turn(session.id, "把圆形换成蓝色", n=2, k=2, seed=0, steps=2)
        assert turn.candidates


def test_serving_an_untrained_sft_rewriter_names_the_command(tmp_path: Path) -> None:
    with Atelier.open(data_dir=str(tmp_path), profile="test", prompt_rewriter="sft", start_worker=False) as atelier:
        session = atelier.prompts.start("一个红色的圆形在中间")
        with pytest.raises(ModelUnavailable, match="atelier prompts train-sft"):
            atelier.prompts.turn(session.id, "把圆形换成蓝色", steps=2)
