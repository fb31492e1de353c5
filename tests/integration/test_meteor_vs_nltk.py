"""app.domain.meteor with NltkLexicon gives nltk's meteor_score, to the last bit.

The exact and stem stages are compared everywhere. The synonym stage is compared on a small
WordNet written here in WordNet 3.0's file format and installed with ``install_wordnet``, on nltk's
own WordNet where it is installed, and on Debian's copy where ``/usr/share/wordnet`` exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nltk
import pytest
from nltk.corpus.reader.wordnet import WordNetCorpusReader
from nltk.translate.meteor_score import meteor_score, single_meteor_score

from app.adapters.text.lexicon import LEXNAMES, NltkLexicon, install_wordnet, lexnames_text
from app.domain.meteor import meteor, meteor_multi

PAIRS = [  # (reference, hypothesis)
    ("the capital of france is paris", "paris is the capital of france"),
    ("the capital of france is paris", "the capital of france is paris"),
    ("the capital is paris", "paris is the capital city"),
    (
        "it is a guide to action that ensures that the military will forever heed party commands",
        "it is a guide to action which ensures that the military always obeys the commands of the party",
    ),
    ("the cat sat on the mat", "the cats were sitting on the mats"),
    ("the cat sat on the mat", "on the mat the cat sat"),
    ("the cat sat on the mat", "mat the on sat cat the"),
    ("the the the the", "the"),
    ("the", "the the the the"),
    ("a b a b a b", "b a b a"),
    ("a b c a b c", "c b a c b a"),
    ("running runners run", "runs running runner"),
    ("he bought a car", "he purchased an automobile"),
    ("she drove the auto to the city", "she drove a car to the metropolis"),
    ("a huge city", "a vast metropolis"),
    ("a big house", "a large house"),
    ("they moved quickly", "they moved rapidly"),
    ("Albert Einstein was born in Ulm", "einstein was born in ulm germany"),
    ("The Eiffel Tower", "the EIFFEL tower"),
    ("connection connections connected connecting", "connect"),
    ("generalizations generalization", "generalize general generalization"),
    ("one two three four five six seven eight nine ten", "ten nine eight seven six five four three two one"),
    ("one two three four five six seven eight nine ten", "one two three four five"),
    ("one two three four five", "one two three four five six seven eight nine ten"),
    ("no overlap at all", "completely different words here"),
    ("paris", "paris"),
    ("paris", "london"),
    ("1889", "in 1889"),
    ("the river flows to the sea", "the sea flows to the river"),
    ("relational databases store tables", "a relational database stores a table"),
    ("x y z x y z x y z", "z y x"),
    ("autos and cars and automobiles", "cars and autos and motorcars"),
    ("the hugest cities", "vast cities huge city"),
    ("buying buys bought", "purchase purchasing"),
    ("the auto is red", "the car is red"),
    ("a vast plain", "a huge plain"),
]


def tokens(text: str) -> list[str]:
    return text.split()


class NoWordNet:
    """A stand-in for nltk's WordNet reader with no synsets."""

    def synsets(self, word: str) -> list[Any]:
        return []


def assert_same_as_nltk(lexicon: NltkLexicon, wordnet: Any) -> None:
    for reference, hypothesis in PAIRS:
        ours = meteor(tokens(reference), tokens(hypothesis), lexicon)
        theirs = single_meteor_score(tokens(reference), tokens(hypothesis), wordnet=wordnet)
        assert ours == pytest.approx(theirs, abs=1e-9, rel=0), (reference, hypothesis)


def test_exact_and_stem_stages_equal_nltk() -> None:
    lexicon = NltkLexicon(wordnet_dir="/nonexistent")
    # Where nltk's own WordNet is installed the lexicon finds it, and the synonym stage is compared too.
    assert_same_as_nltk(lexicon, lexicon.wordnet if lexicon.has_wordnet else NoWordNet())


def test_meteor_multi_equals_nltk_meteor_score() -> None:
    lexicon = NltkLexicon()
    wordnet = lexicon.wordnet if lexicon.has_wordnet else NoWordNet()
    references = [tokens(r) for r, _ in PAIRS[:6]]
    for _, hypothesis in PAIRS[:6]:
        ours = meteor_multi(references, tokens(hypothesis), lexicon)
        assert ours == pytest.approx(meteor_score(references, tokens(hypothesis), wordnet=wordnet), abs=1e-9, rel=0)


# A small WordNet: per file, (synset type, lexicographer file number, lemmas).
SYNSETS = {
    "noun": [
        ("n", 15, ["city", "metropolis", "urban_center"]),
        ("n", 6, ["car", "auto", "automobile", "machine", "motorcar"]),
        ("n", 15, ["Paris", "City_of_Light", "French_capital"]),
    ],
    "verb": [("v", 40, ["buy", "purchase"])],
    "adj": [("a", 0, ["big", "large"]), ("s", 0, ["huge", "immense", "vast"])],
    "adv": [("r", 2, ["quickly", "rapidly", "speedily"])],
}
_HEADER = "  1 This software and database is being provided to you, the LICENSEE, by\n" + (
    "  2 Princeton University.  WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.\n"
)
_SS_NUMBER = {"n": 1, "v": 2, "a": 3, "r": 4, "s": 5}


def write_wordnet_dict(folder: Path) -> Path:
    """WordNet 3.0's dict files for ``SYNSETS`` (byte offsets and all), without ``lexnames``, as Debian ships it."""
    folder.mkdir(parents=True)
    senses: list[str] = []
    for pos, synsets in SYNSETS.items():
        data, index = _HEADER, dict[str, list[int]]()
        for ss_type, lexfile, lemmas in synsets:
            offset = len(data.encode())
            words = " ".join(f"{lemma} 0" for lemma in lemmas)
            # A satellite adjective points ("&", similar to) at its head, the file's first synset.
            pointers = f"001 & {len(_HEADER.encode()):08d} a 0000" if ss_type == "s" else "000"
            data += f"{offset:08d} {lexfile:02d} {ss_type} {len(lemmas):02x} {words} {pointers} | a gloss  \n"
            for lemma in lemmas:
                index.setdefault(lemma.lower(), []).append(offset)
                senses.append(f"{lemma.lower()}%{_SS_NUMBER[ss_type]}:{lexfile:02d}:00:: {offset:08d} 1 0\n")
        letter = synsets[0][0]
        (folder / f"data.{pos}").write_text(data)
        (folder / f"index.{pos}").write_text(
            _HEADER
            + "".join(
                f"{lemma} {letter} {len(offs)} 0 {len(offs)} 0 {' '.join(f'{o:08d}' for o in offs)}  \n"
                for lemma, offs in sorted(index.items())
            )
        )
        (folder / f"{pos}.exc").write_text("")
    (folder / "index.sense").write_text("".join(sorted(senses)))
    return folder


@pytest.fixture(scope="module")
def small_wordnet(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("wordnet")
    return install_wordnet(str(write_wordnet_dict(root / "dict")), str(root / "data"))


@pytest.fixture(scope="module")
def stock_reader(small_wordnet: str) -> Iterator[WordNetCorpusReader]:
    """nltk's own reader on the installed copy, found through nltk's data path (where nltk lets it read)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nltk.data, "path", [*nltk.data.path, small_wordnet])
        with pytest.warns(UserWarning, match="multilingual"):
            reader = WordNetCorpusReader(nltk.data.find("corpora/wordnet", paths=[small_wordnet]), None)
        yield reader


def test_lexnames_is_wordnet_30s() -> None:
    lines = lexnames_text().splitlines()
    assert len(lines) == len(LEXNAMES) == 45
    assert lines[0] == "00\tadj.all\t3"
    assert lines[3] == "03\tnoun.Tops\t1"
    assert lines[29] == "29\tverb.body\t2"
    assert lines[44] == "44\tadj.ppl\t3"


def test_install_wordnet_rejects_a_folder_without_wordnet(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"index\.noun"):
        install_wordnet(str(tmp_path), str(tmp_path / "data"))


def test_installed_wordnet_gives_nltks_synonyms(small_wordnet: str, stock_reader: WordNetCorpusReader) -> None:
    assert (Path(small_wordnet) / "corpora" / "wordnet" / "lexnames").read_text() == lexnames_text()
    lexicon = NltkLexicon(wordnet_dir=small_wordnet)
    assert lexicon.has_wordnet
    assert lexicon.synonyms("city") == {"city", "metropolis"}  # multi-word lemmas left out, as nltk does
    assert lexicon.synonyms("cities") == {"city", "metropolis"}  # WordNet's own lemmatisation
    assert lexicon.synonyms("paris") == {"Paris"}  # spelt as WordNet spells it
    assert lexicon.synonyms("vast") == {"huge", "immense", "vast"}  # an adjective satellite
    assert lexicon.synonyms("巴黎") == frozenset()
    assert lexicon.synonyms("armadillo") == frozenset()
    assert {lemma.name() for s in stock_reader.synsets("auto") for lemma in s.lemmas()} == lexicon.synonyms("auto")


def test_synonym_stage_equals_nltk(small_wordnet: str, stock_reader: WordNetCorpusReader) -> None:
    lexicon = NltkLexicon(wordnet_dir=small_wordnet)
    assert_same_as_nltk(lexicon, stock_reader)
    # The synonym stage did match words on these pairs (few: as in nltk, it sees Porter stems).
    stems_only = StemsOnly()
    changed = [
        (r, h) for r, h in PAIRS if meteor(r.split(), h.split(), lexicon) != meteor(r.split(), h.split(), stems_only)
    ]
    assert len(changed) >= 4, changed


class StemsOnly(NltkLexicon):
    def synonyms(self, word: str) -> frozenset[str]:
        return frozenset()


DEBIAN_WORDNET = Path("/usr/share/wordnet")


@pytest.mark.skipif(
    not (DEBIAN_WORDNET / "index.noun").is_file(),
    reason="WordNet 3.0 is not installed at /usr/share/wordnet (Debian's wordnet-base; an optional thesaurus)",
)
def test_debian_wordnet_installs_and_equals_nltk(tmp_path: Path) -> None:
    lexicon = NltkLexicon(wordnet_dir=install_wordnet(str(DEBIAN_WORDNET), str(tmp_path)))
    assert lexicon.has_wordnet
    assert {"city", "metropolis"} <= lexicon.synonyms("city")
    assert_same_as_nltk(lexicon, lexicon.wordnet)
    reference, hypothesis = ["the", "capital", "is", "Paris"], ["Paris", "is", "the", "capital", "city"]
    assert meteor(reference, hypothesis, lexicon) == pytest.approx(0.7698, abs=1e-4)
