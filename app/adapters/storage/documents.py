"""Reading documents to ingest (txt, md, jsonl; folders recursively), labelled question sets (jsonl) and
edit files (ZsRE, CounterFact)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.domain.edits import EditSpec
from app.domain.errors import InvalidParameters, RequestTooLarge
from app.domain.knowledge import MAX_DOCUMENT_CHARS

DOCUMENT_SUFFIXES = (".txt", ".md", ".markdown", ".jsonl")
MAX_FILE_BYTES = 4 * MAX_DOCUMENT_CHARS  # UTF-8 is at most 4 bytes a character


def read_documents(paths: list[str]) -> list[tuple[str, str]]:
    """(source, text) pairs. A file's source is its path as given; files in a folder are named
    ``<folder>/<relative path>``; a jsonl line is one document, its source ``"source"`` or
    ``"id"`` if it has one, else ``<file>#<line>``, its text ``"text"`` (with ``"title"`` prepended)."""
    out: list[tuple[str, str]] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in DOCUMENT_SUFFIXES)
            if not files:
                raise InvalidParameters(f"{given} holds no {', '.join(DOCUMENT_SUFFIXES)} files.", field="path")
            out += [doc for f in files for doc in _read_file(f, f"{given.rstrip('/')}/{f.relative_to(path)}")]
        elif path.is_file():
            out += _read_file(path, given)
        else:
            raise InvalidParameters(f"No such file or folder: {given}", field="path")
    return out


def _read_file(path: Path, source: str) -> list[tuple[str, str]]:
    if path.suffix.lower() not in DOCUMENT_SUFFIXES:
        raise InvalidParameters(f"{source}: only {', '.join(DOCUMENT_SUFFIXES)} files can be ingested.", field="path")
    if path.stat().st_size > MAX_FILE_BYTES and path.suffix.lower() != ".jsonl":
        raise RequestTooLarge(f"{source} is larger than {MAX_FILE_BYTES} bytes.", field="path")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidParameters(f"{source} cannot be read as UTF-8 text: {e}", field="path") from e
    if path.suffix.lower() != ".jsonl":
        return [(source, text)]
    docs = []
    for n, record in _jsonl(text, source):
        body = record.get("text")
        if not isinstance(body, str):
            raise InvalidParameters(f"{source} line {n}: a document needs a 'text' string.", field="path")
        title = record.get("title")
        name = record.get("source") or record.get("id") or f"{source}#{n}"
        docs.append((str(name), f"{title}\n\n{body}" if isinstance(title, str) and title else body))
    return docs


def _jsonl(text: str, source: str) -> list[tuple[int, dict[str, Any]]]:
    records = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise InvalidParameters(f"{source} line {n} is not JSON: {e.msg}.", field="path") from e
        if not isinstance(record, dict):
            raise InvalidParameters(f"{source} line {n} is not a JSON object.", field="path")
        records.append((n, record))
    return records


def read_labelled(path: str, split: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Labelled questions from a jsonl file: ``question`` and ``answers`` (a list; ``answer`` also works),
    filtered by ``split`` when given (a ``split`` field per line)."""
    file = Path(path)
    if not file.is_file():
        raise InvalidParameters(f"No such dataset file: {path}", field="dataset")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidParameters(f"{path} cannot be read as UTF-8 text: {e}", field="dataset") from e
    items = []
    for n, record in _jsonl(text, path):
        if split is not None and record.get("split") != split:
            continue
        answers = record.get("answers", record.get("answer"))
        answers = [answers] if isinstance(answers, str) else answers
        if not isinstance(record.get("question"), str) or not isinstance(answers, list) or not answers:
            raise InvalidParameters(f"{path} line {n}: needs 'question' and 'answers'.", field="dataset")
        items.append({**record, "answers": [str(a) for a in answers]})
        if limit is not None and len(items) >= limit:
            break
    if not items:
        raise InvalidParameters(f"{path} holds no questions" + (f" in split {split!r}." if split else "."))
    return items


class FileDocumentReader:
    """``DocumentReader`` over the local file system."""

    def documents(self, paths: Sequence[str]) -> list[tuple[str, str]]:
        return read_documents(list(paths))

    def labelled(self, path: str, split: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        return read_labelled(path, split, limit)

    def edits(self, path: str, limit: int | None = None) -> list[EditSpec]:
        from app.adapters.storage.edit_files import load_edit_file

        return load_edit_file(path, limit)
