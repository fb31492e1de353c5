"""Module sizes of the ``app`` package at a git revision (default: the working tree).

    python -m benchmarks.module_sizes [--rev REV]

Counts the lines of every ``.py`` file under ``app/`` and reports the median, the 90th percentile, the
largest modules and how many are over 400 lines, with and without the ``__init__.py`` files. The last
line holds the headline figures.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
from pathlib import Path

from benchmarks._common import emit

LARGE = 400


def _sizes(rev: str | None) -> dict[str, int]:
    if rev is None:
        return {str(p): p.read_text(encoding="utf-8").count("\n") for p in Path("app").rglob("*.py")}
    names = subprocess.check_output(["git", "ls-tree", "-r", "--name-only", rev, "app"], text=True).split()
    return {
        name: subprocess.check_output(["git", "show", f"{rev}:{name}"], text=True).count("\n")
        for name in names
        if name.endswith(".py")
    }


def _figures(sizes: list[int]) -> dict[str, float | int]:
    ordered = sorted(sizes)
    return {
        "modules": len(ordered),
        "median": statistics.median(ordered),
        "p90": ordered[int(0.9 * len(ordered))],
        "over_400": sum(size > LARGE for size in ordered),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", default=None, help="A git revision (default: the working tree).")
    args = parser.parse_args()
    sizes = _sizes(args.rev)
    modules = [size for name, size in sizes.items() if not name.endswith("__init__.py")]
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:5]
    everything, without_init = _figures(list(sizes.values())), _figures(modules)
    emit(
        {"rev": args.rev or "working tree", "largest": dict(largest), "all": everything},
        {
            "median": without_init["median"],
            "p90": without_init["p90"],
            "over_400": without_init["over_400"],
            "median_with_init": everything["median"],
            "modules": without_init["modules"],
        },
    )


if __name__ == "__main__":
    main()
