"""Uploaded data files in the data directory: ``files/<id>`` holds the bytes, ``files/<id>.json`` what is known of
them (owner, name, purpose, size, records: chat records or images). Both are written aside and moved in place."""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from datetime import datetime
from pathlib import Path

from app.domain.errors import InvalidParameters
from app.domain.image_dataset import parse_image_archive
from app.domain.training import FILE_PURPOSES, FileNotFound, StoredFile, parse_chat_records
from app.ports.training import FileStore

_ID = re.compile(r"file-[0-9a-f]{32}")
MAX_BYTES = 512 * 1024 * 1024


class LocalFileStore(FileStore):
    def __init__(self, root: str) -> None:
        self._root = Path(root)

    def put(self, owner: str, filename: str, purpose: str, data: bytes, now: datetime) -> StoredFile:
        if purpose not in FILE_PURPOSES:
            raise InvalidParameters(f"purpose must be one of {', '.join(FILE_PURPOSES)}.", field="purpose")
        if len(data) > MAX_BYTES:
            raise InvalidParameters(f"A file holds at most {MAX_BYTES // 2**20} MiB.", field="file")
        images = purpose == "image-lora"
        records = len(parse_image_archive(data) if images else parse_chat_records(data))
        default = "images.zip" if images else "data.jsonl"
        stored = StoredFile(
            id=f"file-{uuid.uuid4().hex}",
            owner=owner,
            filename=os.path.basename(filename or default)[:255],
            purpose=purpose,
            bytes=len(data),
            created_at=now,
            records=records,
        )
        self._root.mkdir(parents=True, exist_ok=True)
        self._write(self._root / stored.id, data)
        meta = {**stored.__dict__, "created_at": now.isoformat()}
        self._write(self._root / f"{stored.id}.json", json.dumps(meta, ensure_ascii=False).encode())
        return stored

    def get(self, file_id: str, owner: str | None = None) -> StoredFile:
        path = self._root / f"{file_id}.json" if _ID.fullmatch(file_id or "") else None
        try:
            meta = json.loads(path.read_text(encoding="utf-8")) if path is not None else None
        except (OSError, ValueError):
            meta = None
        if meta is None or (owner is not None and meta["owner"] != owner):
            raise FileNotFound(f"No file {file_id!r}.")
        return StoredFile(**{**meta, "created_at": datetime.fromisoformat(meta["created_at"])})

    def read(self, file_id: str) -> bytes:
        self.get(file_id)
        return (self._root / file_id).read_bytes()

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
