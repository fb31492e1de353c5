"""METEOR's stemmer and thesaurus from nltk: the Porter stemmer and, where installed, WordNet 3.0.

nltk cannot download here, so WordNet is optional: ``install_wordnet`` copies a WordNet 3.0 ``dict``
folder (Debian's ``/usr/share/wordnet``, for one) into an nltk data directory, adding the ``lexnames``
file nltk reads and Debian does not ship. Without WordNet, ``synonyms`` is empty and METEOR runs its
exact and stem stages only.
"""

from __future__ import annotations

import shutil
import threading
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

from app.adapters.text.words import is_cjk
from app.ports.knowledge import Lexicon

# WordNet 3.0's lexicographer files, in the order of their numbers in the data files.
LEXNAMES = (
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
)
_SYNTACTIC_CATEGORY = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
# What nltk's reader opens when it loads (``lexnames`` is written when missing).
WORDNET_FILES = tuple(f"{kind}.{pos}" for pos in ("adj", "adv", "noun", "verb") for kind in ("index", "data")) + tuple(
    f"{pos}.exc" for pos in ("adj", "adv", "noun", "verb")
)
_CORPUS = "corpora/wordnet"


def lexnames_text() -> str:
    return "".join(f"{i:02d}\t{name}\t{_SYNTACTIC_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))


def install_wordnet(source_dir: str, data_dir: str) -> str:
    """Copy the WordNet 3.0 ``dict`` folder ``source_dir`` to ``<data_dir>/nltk_data/corpora/wordnet``.

    Returns the nltk data directory ``<data_dir>/nltk_data``, the ``wordnet_dir`` of ``NltkLexicon``."""
    source = Path(source_dir)
    missing = [name for name in WORDNET_FILES if not (source / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{source} is not a WordNet dict folder: it lacks {', '.join(missing)}.")
    nltk_data = Path(data_dir) / "nltk_data"
    target = nltk_data / _CORPUS
    shutil.copytree(source, target, dirs_exist_ok=True)
    if not (target / "lexnames").is_file():
        (target / "lexnames").write_text(lexnames_text(), encoding="utf-8")
    return str(nltk_data)


class NltkLexicon(Lexicon):
    """Porter stems (Chinese words unchanged) and WordNet synonyms, as nltk's METEOR uses them.

    ``synonyms(word)`` mirrors nltk's METEOR: the lemma names, as WordNet spells them, of every synset
    of ``word`` (after WordNet's own lemmatisation), leaving out multi-word lemmas.

    WordNet is looked for in ``wordnet_dir`` (an nltk data directory), then on nltk's data path, and
    loaded on first use (a few seconds). nltk opens corpora only under the folders on its data path,
    so a ``wordnet_dir`` holding WordNet is added to ``nltk.data.path``."""

    def __init__(self, wordnet_dir: str | None = None) -> None:
        from nltk.stem.porter import PorterStemmer

        self._wordnet_dir = wordnet_dir
        self._porter = PorterStemmer()
        self._lock = threading.Lock()  # the WordNet reader seeks in shared file handles
        self._wordnet: Any = None
        self._looked = False
        self._cached_stem = lru_cache(maxsize=65536)(self._stem)
        self._cached_synonyms = lru_cache(maxsize=65536)(self._synonyms)

    @property
    def has_wordnet(self) -> bool:
        return self.wordnet is not None

    @property
    def wordnet(self) -> Any:
        """nltk's WordNet reader, or None where WordNet is not installed."""
        with self._lock:
            if not self._looked:
                self._wordnet = _load_wordnet(self._wordnet_dir)
                self._looked = True
            return self._wordnet

    def stem(self, word: str) -> str:
        return self._cached_stem(word)

    def synonyms(self, word: str) -> frozenset[str]:
        return self._cached_synonyms(word)

    def _stem(self, word: str) -> str:
        return word if is_cjk(word) else str(self._porter.stem(word))

    def _synonyms(self, word: str) -> frozenset[str]:
        wordnet = None if is_cjk(word) else self.wordnet
        if wordnet is None:
            return frozenset()
        with self._lock:
            return frozenset(
                lemma.name() for synset in wordnet.synsets(word) for lemma in synset.lemmas() if "_" not in lemma.name()
            )


def _load_wordnet(wordnet_dir: str | None) -> Any:
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class EnglishWordNet(WordNetCorpusReader):  # type: ignore[misc]
        def map_wn(self, version: str = "wordnet") -> None:
            """No mapping of the multilingual (OMW) data, which would re-read ``index.sense`` through
            nltk's global data path; English synsets do not use it."""
            return None

    searches = ([[wordnet_dir]] if wordnet_dir else []) + [None]
    for paths in searches:
        try:
            root = nltk.data.find(_CORPUS, paths=paths)
        except LookupError:
            continue
        # nltk reads corpora only under the folders on its data path, at every file it opens.
        if paths is not None and wordnet_dir not in nltk.data.path:
            nltk.data.path.append(wordnet_dir)
        with warnings.catch_warnings():  # "The multilingual functions are not available ..."
            warnings.simplefilter("ignore")
            return EnglishWordNet(root, None)
    return None
