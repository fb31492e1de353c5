"""The GPU and family benchmarks' code paths, on tiny configs on the CPU: they run and print their headline."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=600, env=env)


def test_the_gpu_benchmark_needs_cuda_and_checks_its_path_on_tiny_configs() -> None:
    refused = run("benchmarks.gpu", "--models", "sd15")
    assert refused.returncode != 0 and "needs a CUDA GPU" in refused.stderr
    done = run("benchmarks.gpu", "--tiny", "--device", "cpu", "--steps", "1", "--dtypes", "float32")
    assert done.returncode == 0, done.stderr[-2000:]
    headline = json.loads(done.stdout.strip().splitlines()[-1])
    assert [row["model"] for row in headline["rows"]] == ["sd15", "sdxl", "flux"]
    assert all(row["raw_it_s"] > 0 and row["atelier_it_s"] > 0 for row in headline["rows"])


@pytest.mark.parametrize("families", ["sdxl,qwen-image"])
def test_the_families_benchmark_prints_each_familys_ratios(families: str) -> None:
    done = run("benchmarks.families", "--families", families, "--rounds", "1", "--jobs", "2", "--switches", "3")
    assert done.returncode == 0, done.stderr[-2000:]
    headline = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(headline["families"]) == set(families.split(","))
    for ratios in headline["families"].values():
        assert ratios["overhead_ratio"] > 0 and ratios["batching_ratio"] > 0
    assert headline["switch_speedup"] > 0
