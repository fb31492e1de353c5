"""An editor's state on disk, written once per edit so that exporting after each edit stays cheap."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from app.domain.errors import ModelUnavailable


class RecordFolder:
    """An editor's state on disk: one safetensors file per edit (``00001.safetensors``, ...) and a
    ``manifest.json`` naming the editor, the model, the number of edits in the state and the
    editor's settings. Records are written once: exporting after the n-th edit writes one file and
    rewrites the manifest atomically; a rollback only lowers the count. The stored records past the
    count are overwritten by later edits."""

    MANIFEST = "manifest.json"

    def __init__(self, folder: str) -> None:
        self.path = Path(folder)

    def manifest(self) -> dict[str, Any] | None:
        file = self.path / self.MANIFEST
        if not file.is_file():
            return None
        try:
            data: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ModelUnavailable(f"The edit state in {self.path} is unreadable: {e}") from e
        return data

    def write(
        self, editor: str, model: str, records: Sequence[dict[str, torch.Tensor]], settings: dict[str, Any], clean: int
    ) -> None:
        """Store ``records`` as the state. The first ``clean`` of them are known to be stored already (the
        editor counts them: loaded or exported, and not rolled back since); the rest are written, then
        the manifest."""
        from safetensors.torch import save_file

        self.path.mkdir(parents=True, exist_ok=True)
        old = self.manifest()
        same = old is not None and old.get("editor") == editor and old.get("model") == model
        start = min(clean, int(old.get("count", 0)), len(records)) if same and old is not None else 0
        for i in range(start, len(records)):
            tmp = self.path / f".{i + 1:05d}.tmp"
            save_file({k: v.detach().contiguous().cpu() for k, v in records[i].items()}, str(tmp))
            os.replace(tmp, self.path / f"{i + 1:05d}.safetensors")
        manifest = {"editor": editor, "model": model, "count": len(records), "settings": settings}
        tmp = self.path / ".manifest.tmp"
        tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        os.replace(tmp, self.path / self.MANIFEST)

    def read(self, editor: str, model: str, keep: int) -> tuple[list[dict[str, torch.Tensor]], dict[str, Any]]:
        """The first ``keep`` records and the stored settings; raises ``ModelUnavailable`` when the folder
        holds fewer or belongs to another editor or model."""
        from safetensors.torch import load_file

        manifest = self.manifest() or {"editor": editor, "model": model, "count": 0, "settings": {}}
        if keep and (manifest.get("editor"), manifest.get("model")) != (editor, model):
            raise ModelUnavailable(
                f"The edit state in {self.path} was written by {manifest.get('editor')!r} for "
                f"{manifest.get('model')!r}, not by {editor!r} for {model!r}."
            )
        if keep > int(manifest.get("count", 0)):
            raise ModelUnavailable(f"The edit state in {self.path} holds {manifest.get('count', 0)} edits, not {keep}.")
        try:
            records = [load_file(str(self.path / f"{i + 1:05d}.safetensors")) for i in range(keep)]
        except OSError as e:
            raise ModelUnavailable(f"The edit state in {self.path} is incomplete: {e}") from e
        return records, dict(manifest.get("settings", {}))
