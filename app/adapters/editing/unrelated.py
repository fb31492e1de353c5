"""Unrelated locality probes: general-knowledge questions far from the geonames edits.

ZsRE scores locality on Natural Questions, prompts that have nothing to do with the edited facts; the
DAFSet-style records' own probes (``dafset``) are the hard CounterFact kind instead, another subject's
question of the same or another geonames relation. NQ is not available offline, so this module writes a
fixed set in its place: days and months in order, small sums, opposites, irregular plurals, chemical
symbols, authors, animals' legs and the alphabet. None names a place, a currency or a continent.

Locality compares the model's argmax tokens before and after the edits, so a probe does not need the
model to know its answer; the answers are given only to fix the teacher-forced positions.
"""

from __future__ import annotations

import random

from app.domain.edits import LocalityProbe

_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]  # fmt: skip
_OPPOSITES = [
    ("hot", "cold"), ("big", "small"), ("up", "down"), ("fast", "slow"), ("light", "dark"), ("happy", "sad"),
    ("old", "young"), ("open", "closed"), ("early", "late"), ("full", "empty"), ("strong", "weak"),
    ("rich", "poor"), ("wet", "dry"), ("hard", "soft"), ("loud", "quiet"),
]  # fmt: skip
_PLURALS = [
    ("mouse", "mice"), ("child", "children"), ("foot", "feet"), ("tooth", "teeth"), ("goose", "geese"),
    ("man", "men"), ("woman", "women"), ("person", "people"), ("box", "boxes"), ("leaf", "leaves"),
]  # fmt: skip
_SYMBOLS = [
    ("gold", "Au"), ("silver", "Ag"), ("iron", "Fe"), ("oxygen", "O"), ("hydrogen", "H"), ("carbon", "C"),
    ("sodium", "Na"), ("helium", "He"), ("copper", "Cu"), ("nitrogen", "N"),
]  # fmt: skip
_AUTHORS = [
    ("Romeo and Juliet", "William Shakespeare"), ("Hamlet", "William Shakespeare"),
    ("Pride and Prejudice", "Jane Austen"), ("War and Peace", "Leo Tolstoy"),
    ("On the Origin of Species", "Charles Darwin"), ("Oliver Twist", "Charles Dickens"),
    ("Nineteen Eighty-Four", "George Orwell"), ("Don Quixote", "Miguel de Cervantes"),
]  # fmt: skip
_LEGS = [
    ("spider", "eight"), ("dog", "four"), ("bird", "two"), ("insect", "six"), ("horse", "four"), ("octopus", "eight"),
]  # fmt: skip


def unrelated_probes(sums: int = 30, seed: int = 0) -> list[LocalityProbe]:
    """The probe set (``sums`` seeded additions among the rest; 85 + ``sums`` probes), the same for a seed."""
    rng = random.Random(seed)
    out = [LocalityProbe(f"What day comes after {d}?", _DAYS[(i + 1) % 7]) for i, d in enumerate(_DAYS)]
    out += [LocalityProbe(f"What month comes after {m}?", _MONTHS[(i + 1) % 12]) for i, m in enumerate(_MONTHS)]
    for _ in range(sums):
        a, b = rng.randint(2, 20), rng.randint(2, 20)
        out.append(LocalityProbe(f"What is {a} plus {b}?", str(a + b)))
    out += [LocalityProbe(f"What is the opposite of {a}?", b) for a, b in _OPPOSITES]
    out += [LocalityProbe(f"What is the plural of {a}?", b) for a, b in _PLURALS]
    out += [LocalityProbe(f"What is the chemical symbol for {a}?", b) for a, b in _SYMBOLS]
    out += [LocalityProbe(f"Who wrote {a}?", b) for a, b in _AUTHORS]
    out += [LocalityProbe(f"How many legs does a {a} have?", b) for a, b in _LEGS]
    out += [
        LocalityProbe(f"Which letter comes after {c} in the alphabet?", chr(ord(c) + 1)) for c in "BCDEFGHJKLMNPRSTW"
    ]
    return out
