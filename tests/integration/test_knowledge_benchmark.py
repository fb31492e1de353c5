"""The knowledge benchmark end to end on a tiny random Llama and the hashing embedder, and its helpers."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from app.lab.knowledge.geonames import Item
from benchmarks.knowledge import METHODS, best_threshold, lowest_share, main, stratified_sample


def _item(n: int, relation: str, tail: bool) -> Item:
    return Item(
        id=f"{relation}/{n}",
        relation=relation,
        subject=f"S{n}",
        question=f"Q{n}?",
        answers=["A"],
        popularity=n,
        log_popularity=float(n),
        subject_zipf=3.0,
        split="test",
        tail=tail,
        passage=f"s{n}",
    )


def test_stratified_sample_keeps_the_mix_and_is_seeded() -> None:
    items = [_item(n, r, n % 4 == 0) for n in range(100) for r in ("capital", "currency")]
    sample = stratified_sample(items, 40, seed=3, label="test")
    assert len(sample) == len({i.id for i in sample}) == 40
    assert sum(i.tail for i in sample) == 10 and sum(i.relation == "capital" for i in sample) == 20
    assert [i.id for i in sample] == [i.id for i in stratified_sample(items, 40, seed=3, label="test")]
    assert [i.id for i in sample] != [i.id for i in stratified_sample(items, 40, seed=4, label="test")]
    assert len(stratified_sample(items, 0, seed=3, label="test")) == 200


def test_best_threshold_maximises_hybrid_accuracy_with_fewest_retrievals() -> None:
    scores = [0.1, 0.2, 0.8, 0.9]
    # Retrieval helps the two low scores only.
    assert best_threshold(scores, [False, False, True, True], [True, True, False, True]) == pytest.approx(0.5)
    # Retrieval never helps: never retrieve.
    assert best_threshold(scores, [True] * 4, [True] * 4) == -math.inf
    assert best_threshold(scores, [False] * 4, [True] * 4) == math.inf


def test_lowest_share_gives_an_exact_rate() -> None:
    assert lowest_share([0.5, 0.1, 0.5, 0.9], 0.5) == [True, True, False, False]
    assert lowest_share([0.3, 0.2], 0.0) == [False, False]


def test_benchmark_runs_on_a_tiny_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    threads = torch.get_num_threads()
    try:
        headline = main(
            [
                *("--llm", "tiny", "--embedder", "hashing", "--calibration", "12", "--test", "8"),
                *("--top-k", "2", "--threads", "1", "--out-dir", str(tmp_path)),
            ]
        )
    finally:
        torch.set_num_threads(threads)
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1]) == headline
    assert set(headline["methods"]) == set(METHODS)
    for figures in [*headline["methods"].values(), headline["token_prob_at_gece_rate"]]:
        assert 0.0 <= figures["accuracy"] <= 1.0 and 0.0 <= figures["retrieval_rate"] <= 1.0
        assert figures["mean_latency_s"] > 0
    assert headline["methods"]["never"]["retrieval_rate"] == 0.0
    assert headline["methods"]["always"]["retrieval_rate"] == headline["methods"]["iterative"]["retrieval_rate"] == 1.0
    assert headline["token_prob_at_gece_rate"]["retrieval_rate"] == headline["methods"]["gece"]["retrieval_rate"]
    assert headline["gece_speedup_vs_always"] > 0 and headline["gece_speedup_vs_iterative"] > 0
    assert -100.0 <= headline["gece_accuracy_minus_always"] <= 100.0
    for auroc in (headline["detector_auroc_tail"], headline["detector_auroc"]):  # null: one class only
        assert auroc is None or 0.0 <= auroc <= 1.0
    detail = json.loads(lines[-2])
    assert detail["n_test"] == 8 and detail["n_calibration"] == 12
    assert set(detail["ablation"]) >= {"all", "without_grad_alignment", "only_alpha", "all_labelled_by_correctness"}
    assert detail["ablation"]["all"]["max_diff_from_stored_estimate"] < 1e-9
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 8
