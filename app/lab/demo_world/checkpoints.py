"""A demo-world training run's files in its work folder: ``state.json`` (the configuration, the finished stages,
the seconds and results of each) and one ``<name>.pt`` payload per checkpoint or stage output.

Every file is written to a temporary name and renamed, so an interrupted run leaves the previous version whole
and resumes from it; a work folder holding another configuration is refused rather than mixed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch


class Checkpoints:
    """``state``: the JSON-native record of the run; ``save``/``load``: the ``.pt`` payloads."""

    def __init__(self, work: Path, config: dict[str, Any]) -> None:
        self.work = work
        self.work.mkdir(parents=True, exist_ok=True)
        self.state = self._load_state(config)

    def _load_state(self, config: dict[str, Any]) -> dict[str, Any]:
        path = self.work / "state.json"
        if path.is_file():
            state: dict[str, Any] = json.loads(path.read_text())
            saved = state.get("config", {})
            if saved and saved != config:
                raise ValueError(
                    f"{self.work} holds a run with another configuration; use another folder or --restart."
                )
            return state
        return {"config": config, "done": [], "seconds": {}}

    def _save_state(self) -> None:
        tmp = self.work / "state.json.tmp"
        tmp.write_text(json.dumps(self.state, indent=2))
        tmp.replace(self.work / "state.json")

    def finish(self, stage: str, seconds: float, **info: Any) -> None:
        """Mark ``stage`` done, adding its last ``seconds`` and storing ``info`` (its results)."""
        self.state["done"].append(stage)
        self.state["seconds"][stage] = self.state["seconds"].get(stage, 0.0) + seconds
        self.state.setdefault("info", {})[stage] = info
        self._save_state()

    def add_seconds(self, stage: str, seconds: float) -> None:
        self.state["seconds"][stage] = self.state["seconds"].get(stage, 0.0) + seconds
        self._save_state()

    def save(self, name: str, payload: dict[str, Any]) -> None:
        tmp = self.work / f"{name}.pt.tmp"
        torch.save(payload, tmp)
        tmp.replace(self.work / f"{name}.pt")

    def load(self, name: str) -> dict[str, Any] | None:
        path = self.work / f"{name}.pt"
        if not path.is_file():
            return None
        payload: dict[str, Any] = torch.load(path, weights_only=False)
        return payload

    @property
    def train_minutes(self) -> float:
        return sum(float(s) for s in self.state["seconds"].values()) / 60.0
