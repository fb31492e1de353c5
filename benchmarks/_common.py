"""Shared helpers: a demo deployment in a temporary data dir, and JSON output."""

from __future__ import annotations

import json
import platform
import statistics
from typing import Any


def environment(threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    return {"threads": threads, "machine": platform.machine(), "torch": torch.__version__}


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_s": round(statistics.median(ordered), 5),
        "p90_s": round(ordered[max(0, int(0.9 * len(ordered)) - 1)], 5),
        "runs": len(ordered),
    }


def emit(detail: dict[str, Any], headline: dict[str, Any]) -> None:
    """The details first, the headline figures on the last line."""
    print(json.dumps(detail, ensure_ascii=False))
    print(json.dumps(headline, ensure_ascii=False))
