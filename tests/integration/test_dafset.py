"""The DAFSet-style edit data built from the geonames facts: determinism, splits, counterfactual targets,
rephrases, locality probes, robust prefixes, plain text, and the ZsRE / CounterFact files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.domain.edits import EditSpec, LocalityProbe
from app.domain.errors import InvalidParameters
from app.lab.edits.dafset import (
    LONG_TAIL,
    POPULAR,
    ROBUST,
    SUBSETS,
    TEST,
    TRAIN,
    EditRecord,
    build_edits,
    load_counterfact,
    load_zsre,
    plain_text,
    write_counterfact,
    write_dafset,
    write_zsre,
)
from app.lab.knowledge.geonames import CALIBRATION, Item, build_dataset, extra_city_items, is_correct

Edits = dict[str, list[EditRecord]]


@pytest.fixture(scope="module")
def items() -> list[Item]:
    return build_dataset(seed=0)[0]


@pytest.fixture(scope="module")
def edits() -> Edits:
    return build_edits(seed=0)


def _base(edits: Edits) -> list[EditRecord]:
    return edits[POPULAR] + edits[LONG_TAIL]


def _all(edits: Edits) -> list[EditRecord]:
    return [r for s in SUBSETS for r in edits[s]]


def _digest(root: Path) -> str:
    return hashlib.sha256(
        b"".join((root / n).read_bytes() for n in ("train.json", "test.json", "subsets.json"))
    ).hexdigest()


def test_same_seed_same_records_and_another_seed_differs(tmp_path: Path, edits: Edits) -> None:
    assert build_edits(seed=0) == edits
    other = build_edits(seed=1)
    assert sum(len(v) for v in other.values()) == sum(len(v) for v in edits.values())
    assert [r.target_new for r in _base(other)] != [r.target_new for r in _base(edits)]


@pytest.mark.slow
def test_same_seed_gives_byte_identical_files_across_processes(tmp_path: Path) -> None:
    write_dafset(tmp_path / "a", seed=0)
    script = "import sys; from app.lab.edits.dafset import write_dafset; write_dafset(sys.argv[1], 0)"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "b")], check=True, env=env, cwd=Path.cwd())
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


def test_counts_one_record_per_fact_and_a_quarter_robust(items: list[Item], edits: Edits) -> None:
    base = _base(edits)
    assert sorted(r.id for r in base) == sorted(i.id for i in items)
    by_id = {i.id: i for i in items}
    assert all(r.subset == (LONG_TAIL if by_id[r.id].tail else POPULAR) for r in base)
    for split in (TRAIN, TEST):
        n = sum(r.split == split for r in base)
        assert sum(r.split == split for r in edits[ROBUST]) == round(0.25 * n)
    assert len({r.id for r in _all(edits)}) == len(_all(edits))


def test_splits_follow_geonames_and_share_no_subject(items: list[Item], edits: Edits) -> None:
    by_id = {i.id: i for i in items}
    assert all(r.split == (TRAIN if by_id[r.id].split == CALIBRATION else TEST) for r in _base(edits))
    subjects = {s: {r.subject.casefold() for r in _all(edits) if r.split == s} for s in (TRAIN, TEST)}
    assert subjects[TRAIN] and subjects[TEST] and not subjects[TRAIN] & subjects[TEST]


def test_target_new_is_another_subjects_answer_and_never_a_true_one(items: list[Item], edits: Edits) -> None:
    by_id = {i.id: i for i in items}
    for r in _base(edits):
        item = by_id[r.id]
        assert r.target_true == item.answers[0] and r.answers == tuple(item.answers)
        assert not is_correct(r.target_new, item), r
        assert r.target_new.casefold() not in {a.casefold() for a in item.answers}
        assert any(i.answers[0] == r.target_new for i in items if i.relation == r.relation and i.id != r.id)
    targets = {r.target_new for r in _base(edits) if r.relation == "capital"}
    assert len(targets) > 50  # spread over the relation's answers, not a few


def test_prompt_subject_and_rephrases(items: list[Item], edits: Edits) -> None:
    by_id = {i.id: i for i in items}
    for r in _base(edits):
        assert r.prompt == by_id[r.id].question
        assert r.subject and r.subject.casefold() in r.prompt.casefold()
        assert len(r.rephrases) == 3 and len(set(r.rephrases)) == 3 and r.prompt not in r.rephrases
        assert all(r.subject.casefold() in p.casefold() for p in r.rephrases)
    gambia = next(r for r in _base(edits) if r.id == "currency/gambia")
    assert all("the Gambia" in p or "The Gambia" in p for p in (gambia.prompt, *gambia.rephrases))


def test_locality_probes_are_true_facts_about_other_subjects_of_the_same_split(items: list[Item], edits: Edits) -> None:
    by_question = {i.question: i for i in items}
    for r in _base(edits):
        assert len(r.locality) == 2
        probed = [by_question[p.prompt] for p in r.locality]
        assert [p.answer for p in r.locality] == [i.answers[0] for i in probed]
        assert probed[0].relation != r.relation and probed[1].relation == r.relation
        assert len({i.subject for i in probed}) == 2
        for i in probed:
            assert i.subject != r.subject and r.subject.casefold() not in i.question.casefold()
            assert (TRAIN if i.split == CALIBRATION else TEST) == r.split
            assert not is_correct(r.target_new, i)
    continent = [r for r in _base(edits) if r.relation == "continent"]
    # Neighbours share the true answer where the split has one (Antarctica may have none).
    assert sum(r.locality[1].answer == r.target_true for r in continent) >= len(continent) - 2


def test_extra_cities_are_training_only_new_subjects(items: list[Item]) -> None:
    extra = extra_city_items(300, seed=0)
    assert extra == extra_city_items(300, seed=0) and extra_city_items(0) == []
    assert len(extra) == 300 and len({i.id for i in extra}) == 300
    assert {i.relation for i in extra} == {"country_of_city"} and {i.split for i in extra} == {CALIBRATION}
    assert not {i.id for i in extra} & {i.id for i in items}
    benchmark = [i.subject.casefold() for i in items]
    for i in extra:
        assert i.subject.casefold() not in benchmark and i.subject in i.question
        assert not is_correct(i.subject, i)  # the name does not give the answer away
    per_country: dict[str, int] = {}
    for i in extra:
        per_country[i.answers[0]] = per_country.get(i.answers[0], 0) + 1
    assert max(per_country.values()) <= 12 and sum(i.tail for i in extra) == 150


def test_extra_cities_grow_the_training_split_and_leave_the_test_split(items: list[Item], edits: Edits) -> None:
    grown = build_edits(seed=0, extra_cities=200)
    assert [r for r in _all(grown) if r.split == TEST] == [r for r in _all(edits) if r.split == TEST]
    old = [r for r in _base(edits) if r.split == TRAIN]
    new = [r for r in _base(grown) if r.split == TRAIN]
    assert len(new) == len(old) + 200
    cities = {i.id: i for i in extra_city_items(200, seed=0)}
    added = [r for r in new if r.id in cities]
    assert len(added) == 200
    values = {i.answers[0] for i in items if i.relation == "country_of_city"}  # the benchmark's answers
    for r in added:
        assert r.target_new in values and not is_correct(r.target_new, cities[r.id])
        assert len(r.locality) == 2 and all(r.subject not in p.prompt for p in r.locality)
    # the larger pool gives most added cities a neighbour that shares their country
    assert sum(r.locality[1].answer == r.target_true for r in added) >= 0.8 * len(added)
    assert len([r for r in grown[ROBUST] if r.split == TRAIN]) == round(0.25 * len(new))


def test_robust_records_are_copies_with_short_prepended_prefixes(edits: Edits) -> None:
    base = {r.id: r for r in _base(edits)}
    for r in edits[ROBUST]:
        original = base[r.id.removeprefix("robust/")]
        assert (r.prompt, r.rephrases, r.locality, r.target_new, r.split) == (
            original.prompt,
            original.rephrases,
            original.locality,
            original.target_new,
            original.split,
        )
        assert len(r.prefixes) == len(r.rephrases) + len(r.locality)
        assert all(1 <= len(p.split()) <= 30 for p in r.prefixes)
        spec = r.to_spec()
        prompts = [*spec.rephrases, *(x.prompt for x in spec.locality)]
        raw = [*r.rephrases, *(x.prompt for x in r.locality)]
        assert prompts == [f"{p} {x}" for p, x in zip(r.prefixes, raw, strict=True)]
        assert spec.prompt == r.prompt  # the edit prompt itself is not prefixed
        assert all(r.subject.casefold() not in p.casefold() for p in r.prefixes)
    assert len({p for r in edits[ROBUST] for p in r.prefixes}) > 300


def test_every_record_is_a_valid_edit_spec(edits: Edits) -> None:
    for r in _all(edits):
        spec = r.to_spec()
        assert isinstance(spec, EditSpec) and spec.target == r.target_new and spec.subject == r.subject


def test_plain_text_passages(edits: Edits) -> None:
    texts = plain_text(seed=0)
    assert len(texts) == 200 == len(set(texts)) and texts == plain_text(seed=0)
    assert all(10 <= len(t.split()) <= 40 and t.endswith(".") for t in texts)
    assert plain_text(seed=1, n=20) != texts[:20]
    with pytest.raises(InvalidParameters):
        plain_text(seed=0, n=10**6)


def test_write_dafset_files(tmp_path: Path) -> None:
    counts = write_dafset(tmp_path, seed=0)
    assert json.loads((tmp_path / "subsets.json").read_text()) == counts
    for split in (TRAIN, TEST):
        loaded = load_zsre(tmp_path / f"{split}.json")
        assert {r.split for r in loaded} == {split}
        assert len(loaded) == sum(c[split] for c in counts["subsets"].values())
    assert counts["records"] == sum(c[TRAIN] + c[TEST] for c in counts["subsets"].values())


# --- files ---------------------------------------------------------------------------------------------------


def test_zsre_round_trip_and_published_keys(tmp_path: Path, edits: Edits) -> None:
    records = _all(edits)
    write_zsre(records, tmp_path / "zsre.json")
    assert load_zsre(tmp_path / "zsre.json") == records
    rows = json.loads((tmp_path / "zsre.json").read_text(encoding="utf-8"))
    robust = next(row for row in rows if row["subset"] == ROBUST)
    record = next(r for r in records if r.id == robust["id"])
    spec = record.to_spec()
    assert robust["src"] == record.prompt and robust["alt"] == record.target_new
    assert robust["rephrase"] == spec.rephrases[0]
    assert robust["loc"] == "nq question: " + spec.locality[0].prompt and robust["loc_ans"] == spec.locality[0].answer
    assert robust["answers"] == list(record.answers) and robust["pred"] == record.target_true


def test_counterfact_round_trip_and_published_keys(tmp_path: Path, edits: Edits) -> None:
    records = _all(edits)
    write_counterfact(records, tmp_path / "cf.json")
    assert load_counterfact(tmp_path / "cf.json") == records
    rows = json.loads((tmp_path / "cf.json").read_text(encoding="utf-8"))
    for row, record in zip(rows, records, strict=True):
        rewrite = row["requested_rewrite"]
        assert rewrite["prompt"].count("{}") == 1 and rewrite["prompt"].format(rewrite["subject"]) == record.prompt
        assert rewrite["target_new"]["str"] == record.target_new
        assert row["paraphrase_prompts"] == list(record.to_spec().rephrases)


def _dump(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


REAL_ZSRE = {
    "subject": "Watts Humphrey",
    "src": "What university did Watts Humphrey attend?",
    "pred": "Trinity College",
    "rephrase": "What university did Watts Humphrey take part in?",
    "alt": "University of Michigan",
    "answers": ["Illinois Institute of Technology"],
    "loc": "nq question: who played desmond doss father in hacksaw ridge",
    "loc_ans": "Hugo Weaving",
    "cond": "Trinity College >> University of Michigan || What university did Watts Humphrey attend?",
}

REAL_COUNTERFACT = {
    "case_id": 0,
    "pararel_idx": 2796,
    "requested_rewrite": {
        "prompt": "The mother tongue of {} is",
        "relation_id": "P103",
        "target_new": {"str": "English", "id": "Q1860"},
        "target_true": {"str": "French", "id": "Q150"},
        "subject": "Danielle Darrieux",
    },
    "paraphrase_prompts": [
        "Shayna does this and Yossel goes still and dies. Danielle Darrieux, a native",
        "An album was recorded for Capitol Nashville but never released. Danielle Darrieux spoke the language",
    ],
    "neighborhood_prompts": ["The mother tongue of Léon Blum is", "Montesquieu, speaker of"],
    "attribute_prompts": ["J.\u00a0R.\u00a0R. Tolkien is a native speaker of"],
    "generation_prompts": ["Danielle Darrieux's mother tongue is"],
}


def test_loads_a_real_zsre_record(tmp_path: Path) -> None:
    [r] = load_zsre(_dump(tmp_path / "zsre_mend_eval.json", [REAL_ZSRE]))
    assert (r.prompt, r.subject, r.target_new, r.target_true) == (
        REAL_ZSRE["src"],
        "Watts Humphrey",
        "University of Michigan",
        "Illinois Institute of Technology",
    )
    assert r.rephrases == (REAL_ZSRE["rephrase"],)
    assert r.locality == (LocalityProbe("who played desmond doss father in hacksaw ridge", "Hugo Weaving"),)
    assert r.id == "zsre/0" and r.prefixes == () and r.to_spec().target == "University of Michigan"


def test_loads_a_real_counterfact_record(tmp_path: Path) -> None:
    [r] = load_counterfact(_dump(tmp_path / "counterfact.json", [REAL_COUNTERFACT]))
    assert r.prompt == "The mother tongue of Danielle Darrieux is" and r.subject == "Danielle Darrieux"
    assert (r.target_new, r.target_true, r.relation, r.id) == ("English", "French", "P103", "counterfact/0")
    assert r.rephrases == tuple(REAL_COUNTERFACT["paraphrase_prompts"])  # type: ignore[arg-type]
    assert r.locality == (
        LocalityProbe("The mother tongue of Léon Blum is", "French"),
        LocalityProbe("Montesquieu, speaker of", "French"),
    )
    assert r.to_spec().subject == "Danielle Darrieux"


def _without(row: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != key}


@pytest.mark.parametrize(
    ("loader", "data", "expected"),
    [
        (load_zsre, {"not": "a list"}, "expected a JSON list of records, got dict"),
        (load_zsre, [REAL_ZSRE, _without(REAL_ZSRE, "alt")], "record 1: missing key 'alt'"),
        (load_zsre, [{**REAL_ZSRE, "rephrase": ["a", "b"]}], "record 0: 'rephrase' must be a string"),
        (load_zsre, [{**REAL_ZSRE, "subject": "Someone Else"}], "record 0: subject must occur in the prompt"),
        (load_zsre, [REAL_ZSRE, REAL_ZSRE, "text"], "record 2: the record must be an object"),
        (load_zsre, [{**REAL_ZSRE, "answers": [], "pred": ""}], "record 0: has no true answer"),
        (load_counterfact, [_without(REAL_COUNTERFACT, "requested_rewrite")], "missing key 'requested_rewrite'"),
        (
            load_counterfact,
            [{**REAL_COUNTERFACT, "requested_rewrite": _without(REAL_COUNTERFACT["requested_rewrite"], "target_true")}],
            "record 0: missing key 'requested_rewrite.target_true'",
        ),
        (
            load_counterfact,
            [{**REAL_COUNTERFACT, "requested_rewrite": {**REAL_COUNTERFACT["requested_rewrite"], "prompt": "No slot"}}],
            "record 0: 'requested_rewrite.prompt' has no '{}'",
        ),
        (load_counterfact, [{**REAL_COUNTERFACT, "locality": [{"prompt": "x"}]}], "missing key 'locality[0].answer'"),
    ],
)
def test_malformed_files_raise_invalid_parameters(tmp_path: Path, loader: Any, data: Any, expected: str) -> None:
    path = _dump(tmp_path / "bad.json", data)
    with pytest.raises(InvalidParameters) as error:
        loader(path)
    assert str(path) in error.value.message and expected in error.value.message


def test_unreadable_json_raises_invalid_parameters(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("[{", encoding="utf-8")
    with pytest.raises(InvalidParameters, match=r"broken\.json"):
        load_zsre(path)
    with pytest.raises(InvalidParameters, match=r"missing\.json"):
        load_counterfact(tmp_path / "missing.json")
