"""The prompt-session benchmark end to end on the shipped demo model (a few SFT and RL steps, tiny settings)."""

from __future__ import annotations

import json

import pytest

from benchmarks.prompt_sessions import HEADLINE, main


def test_the_benchmark_prints_the_headline(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--instructions", "3", "--k", "2", "--sft-steps", "5", "--sft-records", "200", "--sft-held-out", "2"]
    args += ["--headroom", "2", "--sampling", "2"]
    headline = main([*args, "--steps", "4", "--threads", "1", "--rl-steps", "2", "--rl-held-out", "2"])
    lines = capsys.readouterr().out.strip().splitlines()
    last = json.loads(lines[-1])
    detail = json.loads(lines[-2])
    headroom = detail["headroom"]
    for name in ("sft", "sft_rl"):
        reach = detail["sampling_reach"][name]
        assert reach["records"] == 2 and reach["samples"] == 2
        assert reach["greedy_wrong"] == round(2 * (1 - reach["greedy_exact"]))
        assert 0.0 <= reach["exact_sample_share_on_wrong"] <= reach["wrong_with_an_exact_sample"] <= 1.0
    assert headroom["records"] == 3 and set(headroom) >= {"target", "without_yige", "phrasing_0", "phrasing_1", "any"}
    assert max(headroom["target"], headroom["phrasing_mean"]) <= headroom["any"] <= 1.0
    assert last == headline
    assert set(last) == {
        "success_rate",
        "aesthetic",
        "preference",
        "drift",
        "sft_rl_gain_over_concat",
        "sft_rl_gain_over_sft",
    }
    for metric in ("success_rate", "aesthetic", "preference", "drift"):
        assert set(last[metric]) == set(HEADLINE)
        for method in HEADLINE:
            assert 0.0 <= last[metric][method] <= 1.0
    rate = last["success_rate"]
    assert last["sft_rl_gain_over_concat"] == pytest.approx(rate["sft_rl"] - rate["concat"])
    assert last["sft_rl_gain_over_sft"] == pytest.approx(rate["sft_rl"] - rate["sft"])
    assert last["drift"]["concat"] > 0  # the instruction was appended
