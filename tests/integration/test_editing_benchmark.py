"""The editing benchmark end to end on the tiny random Llama (meta-training included, a few steps)."""

from __future__ import annotations

import json

import pytest

from benchmarks.editing import EDITORS, main


def test_the_benchmark_prints_the_headline_for_every_editor_and_t(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--llm", "tiny", "--T", "1,2", "--edits", "4", "--train-steps", "3", "--train-limit", "8"]
    results = main([*args, "--blocks", "1", "--threads", "1", "--fluency", "1"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == results and set(last) == {"T1", "T2"}
    for t, chunks in (("T1", 4), ("T2", 2)):
        assert set(last[t]) == set(EDITORS)
        for scores in last[t].values():
            assert {"rel", "gen", "loc", "fluency", "ms_per_edit"} <= set(scores)
            assert scores["chunks"] == chunks and scores["edits"] == 4
            assert 0.0 <= scores["rel"] <= 1.0 and 0.0 <= scores["loc"] <= 1.0 and scores["fluency"] >= 0.0
            assert 0.0 <= scores["loc_unrelated"] <= 1.0  # the container's evaluator reads the unrelated probes
    assert last["T1"]["grace"]["rel"] == 1.0  # GRACE memorises every edit exactly
    assert last["T1"]["grace"]["loc_unrelated"] == 1.0  # and its codebook never fires on unrelated prompts
