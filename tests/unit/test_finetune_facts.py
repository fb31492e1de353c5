"""The fine-tuning facts: new facts no model knows, and rehearsal records that never give away what is measured."""

from __future__ import annotations

import json
from pathlib import Path

from app.lab.finetune.facts import general_records, write_facts
from app.lab.knowledge.geonames import build_dataset


def test_rehearsal_alternates_continents_and_capitals_the_benchmark_does_not_ask() -> None:
    records = general_records(45)
    questions = [r["messages"][0]["content"] for r in records]
    assert len(records) == 45
    assert all(q.startswith("Which continent") for q in questions[::2])
    assert all("capital" in q for q in questions[1::2])
    items, _ = build_dataset(0)
    asked = [i for i in items if i.relation == "capital" and not i.tail]  # the benchmark asks the first 60
    rehearsed = " ".join(r["messages"][1]["content"] for r in records[1::2])
    assert not [i.subject for i in asked if f"capital of {i.subject} is" in rehearsed]


def test_the_same_seed_writes_the_same_files(tmp_path: Path) -> None:
    first = write_facts(str(tmp_path / "a"), count=4, phrasings=3, general=6)
    second = write_facts(str(tmp_path / "b"), count=4, phrasings=3, general=6)
    assert first["train"] == 4 * 2 * 3 + 6 == second["train"]
    for name in ("train", "validation", "held_out"):
        assert (tmp_path / "a" / f"{name}.jsonl").read_text() == (tmp_path / "b" / f"{name}.jsonl").read_text()
    held_out = [json.loads(line) for line in (tmp_path / "a" / "held_out.jsonl").read_text().splitlines()]
    trained = (tmp_path / "a" / "train.jsonl").read_text()
    assert all(row["question"] not in trained for row in held_out)  # a phrasing no record uses
