"""The retrieval corpus of the geonames benchmark: one English passage of about 100 words per country.

Each passage is built from the country's facts with varied sentence templates: continent and area, capital,
population, neighbours by land border (or, for islands, the two countries whose main towns are closest),
languages, currency, its largest towns, and codes. It names its country in its first sentence and mentions
other countries, so passages are not trivially separable. The templates and sentence order are picked by a
hash of the country's code, so the corpus does not depend on the dataset's seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from app.lab.knowledge.geonames_tables import CONTINENTS
from app.lab.knowledge.geonames_world import City, Country, World, pick, slug


@dataclass(frozen=True)
class CorpusPassage:
    """One corpus document: ``source`` is the country's slug (``corpus/<source>.md``)."""

    source: str
    title: str
    text: str


def _number_words(n: int) -> str:
    for size, word in ((1_000_000_000, "billion"), (1_000_000, "million")):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {word}"
    return f"{round(n, -3) if n >= 10_000 else n:,}"


def _listing(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    (la1, lo1), (la2, lo2) = (tuple(map(math.radians, p)) for p in (a, b))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * math.asin(min(1.0, math.sqrt(h)))


def _sentences(world: World, c: Country, asked: list[City] | None = None) -> list[str]:
    def choose(slot: str, options: list[str]) -> str:
        return options[pick(f"corpus:{c.code}:{slot}", len(options))]

    the = world.the(c.code)
    The = the[0].upper() + the[1:]
    continent = CONTINENTS[c.continent]
    area = f"{c.area:,} square kilometres"
    intro = choose(
        "intro",
        [
            f"{The} is located in {continent} and covers an area of {area}.",
            f"{The} lies in {continent}; its area is about {area}.",
            f"Covering {area}, {the} is part of {continent}.",
        ]
        if c.area
        else [f"{The} is located in {continent}.", f"{The} lies in {continent}."],
    )
    out = {"intro": intro}
    capital = world.capital(c.code)
    out["capital"] = (
        choose(
            "capital",
            [f"Its capital is {capital[0]}.", f"The capital city is {capital[0]}.", f"{capital[0]} is the capital."],
        )
        if capital
        else "It has no capital city."
    )
    p, about = c.population, _number_words(c.population)
    if p >= 10_000:
        out["population"] = choose(
            "population",
            [
                f"It has a population of about {about} ({p:,} people).",
                f"Roughly {about} people live there; the figure used here is {p:,}.",
                f"Its population is {p:,}, or about {about}.",
            ],
        )
    elif p:
        out["population"] = choose(
            "population",
            [f"It has a population of {p:,}.", f"Only {p:,} people live there.", f"Its population is just {p:,}."],
        )
    else:
        out["population"] = "It has no permanent population."
    out["rank"] = _rank_sentence(world, c, choose)
    neighbours = _neighbour_sentence(world, c, choose)
    if neighbours:
        out["neighbours"] = neighbours
    langs = list(c.languages[:3])
    if len(langs) > 1:
        out["languages"] = choose(
            "languages",
            [
                f"Languages spoken include {_listing(langs)}.",
                f"The main languages are {_listing(langs)}.",
                f"{_listing(langs)} are widely spoken.",
            ],
        )
    elif langs:
        out["languages"] = choose("languages", [f"The main language is {langs[0]}.", f"Most people speak {langs[0]}."])
    currency = world.currency(c.code)
    out["currency"] = (
        choose(
            "currency",
            [
                f"The currency is the {currency[0]}.",
                f"The {currency[0]} is the official currency.",
                f"Payments are made in the {currency[0]}.",
            ],
        )
        if currency
        else "It has no currency of its own."
    )
    towns = world.by_country.get(c.code, [])[:3]
    if len(towns) > 1:
        listed = _listing([f"{t.name} ({t.population:,})" for t in towns])
        kind = "cities" if towns[0].population >= 100_000 else "towns"
        out["towns"] = choose(
            "towns",
            [
                f"The largest {kind} are {listed}.",
                f"Its biggest settlements are {listed}.",
                f"Major {kind}, with their populations, are {listed}.",
            ],
        )
    elif towns:
        out["towns"] = f"The main settlement is {towns[0].name}, with {towns[0].population:,} inhabitants."
    others = [t for t in asked or [] if t.name not in {x.name for x in towns}]
    if others:  # the cities questions ask about, so that the passage holds what they ask
        listed = _listing([t.name for t in sorted(others, key=lambda t: (-t.population, t.name))])
        out["towns"] = f"{out.get('towns', '')} Other towns of {c.name} include {listed}.".strip()
    codes = f"Its ISO country codes are {c.code} and {c.iso3}"
    if c.tld and c.phone:
        codes += f", its internet domain is {c.tld} and its telephone code is +{c.phone}."
    else:
        codes += f" and its internet domain is {c.tld}." if c.tld else "."
    out["codes"] = codes
    orders = [
        ("capital", "population", "rank", "neighbours", "languages", "currency", "towns", "codes"),
        ("population", "rank", "capital", "towns", "neighbours", "currency", "languages", "codes"),
        ("capital", "neighbours", "population", "towns", "rank", "languages", "currency", "codes"),
    ]
    order = orders[pick(f"corpus:{c.code}:order", len(orders))]
    return [out["intro"], *(out[k] for k in order if k in out)]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _rank_sentence(world: World, c: Country, choose: Callable[[str, list[str]], str]) -> str:
    n = len(world.countries)
    by_area = 1 + sum(o.area > c.area for o in world.countries.values())
    by_people = 1 + sum(o.population > c.population for o in world.countries.values())
    density = f"{c.population / c.area:,.1f}" if c.area and c.population else ""
    if not c.population:
        return f"It is the {_ordinal(by_area)} largest of the {n} countries and territories listed here by area."
    options = [
        f"Of the {n} countries and territories listed here it is the {_ordinal(by_area)} largest by area "
        f"and the {_ordinal(by_people)} by population.",
        f"It ranks {_ordinal(by_people)} of {n} by population and {_ordinal(by_area)} by area.",
    ]
    if density:
        options.append(
            f"With about {density} people per square kilometre, it ranks {_ordinal(by_people)} of {n} by population."
        )
    return choose("rank", options)


def _neighbour_sentence(world: World, c: Country, choose: Callable[[str, list[str]], str]) -> str | None:
    land = [world.the(n) for n in c.neighbours if n in world.countries]
    if len(land) > 6:
        return f"It borders {len(land)} countries, among them {_listing(land[:5])}."
    if len(land) > 1:
        return choose(
            "neighbours",
            [
                f"It shares borders with {_listing(land)}.",
                f"Its neighbours are {_listing(land)}.",
                f"It borders {_listing(land)}.",
            ],
        )
    if land:
        return f"Its only land neighbour is {land[0]}."
    here = world.location(c.code)
    if here is None:
        return None
    others = []
    for code in world.countries:
        there = world.location(code)
        if code != c.code and there is not None:
            others.append((_distance(here, there), code))
    near = [world.the(code) for _, code in sorted(others)[:2]]
    return choose(
        "neighbours",
        [
            f"It has no land borders; the nearest countries are {_listing(near)}.",
            f"The closest other countries are {_listing(near)}, across the sea.",
            f"Its nearest neighbours, across water, are {_listing(near)}.",
        ],
    )


def build_corpus(world: World, asked: list[City] | None = None) -> list[CorpusPassage]:
    """Every country's passage, sorted by source; ``asked``: the cities ``country_of_city`` questions name, each
    named in its country's passage."""
    by_country: dict[str, list[City]] = {}
    for city in asked or []:
        by_country.setdefault(city.country, []).append(city)
    passages = [
        CorpusPassage(slug(c.name), c.name, " ".join(s for s in _sentences(world, c, by_country.get(code)) if s))
        for code, c in world.countries.items()
    ]
    return sorted(passages, key=lambda p: p.source)
