"""Reading documents to ingest (PDF, HTML, DOCX, Markdown, text, JSONL; folders recursively), labelled question
sets (jsonl) and edit files (ZsRE, CounterFact)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.adapters.storage.document_formats import DOCUMENT_SUFFIXES, MAX_PAGES, extract_documents, jsonl_records
from app.domain.edits import EditSpec
from app.domain.errors import InvalidParameters, RequestTooLarge

MAX_FILE_BYTES = 20 * 1024 * 1024  # a document file larger than this is refused (settings: knowledge_max_file_mb)


def read_documents(
    paths: list[str], max_bytes: int = MAX_FILE_BYTES, max_pages: int = MAX_PAGES
) -> list[tuple[str, str]]:
    """(source, text) pairs of PDF, HTML, DOCX, Markdown, text and JSONL files (``document_formats``). A file's
    source is its path as given; files in a folder are named ``<folder>/<relative path>``; a jsonl line is one
    document, its source ``"source"`` or ``"id"`` if it has one, else ``<file>#<line>``, its text ``"text"`` (with
    ``"title"`` prepended)."""
    out: list[tuple[str, str]] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in DOCUMENT_SUFFIXES)
            if not files:
                raise InvalidParameters(f"{given} holds no {', '.join(DOCUMENT_SUFFIXES)} files.", field="path")
            for file in files:
                out += _read_file(file, f"{given.rstrip('/')}/{file.relative_to(path)}", max_bytes, max_pages)
        elif path.is_file():
            out += _read_file(path, given, max_bytes, max_pages)
        else:
            raise InvalidParameters(f"No such file or folder: {given}", field="path")
    return out


def _read_file(path: Path, source: str, max_bytes: int, max_pages: int) -> list[tuple[str, str]]:
    if path.suffix.lower() not in DOCUMENT_SUFFIXES:
        raise InvalidParameters(f"{source}: only {', '.join(DOCUMENT_SUFFIXES)} files can be ingested.", field="path")
    if path.stat().st_size > max_bytes:
        raise RequestTooLarge(f"{source} is larger than {max_bytes // (1024 * 1024)} MB.", field="path")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InvalidParameters(f"{source} cannot be read.", field="path") from e
    return extract_documents(source, data, "path", max_pages)


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
    for n, record in jsonl_records(text, path, "path"):
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
    """``DocumentReader`` over the local file system; files larger than ``max_bytes`` and PDFs of more than
    ``max_pages`` pages are refused."""

    def __init__(self, max_bytes: int = MAX_FILE_BYTES, max_pages: int = MAX_PAGES) -> None:
        self.max_bytes, self.max_pages = max_bytes, max_pages

    def documents(self, paths: Sequence[str]) -> list[tuple[str, str]]:
        return read_documents(list(paths), self.max_bytes, self.max_pages)

    def parse(self, name: str, data: bytes) -> list[tuple[str, str]]:
        if len(data) > self.max_bytes:
            raise RequestTooLarge(f"{name} is larger than {self.max_bytes // (1024 * 1024)} MB.", field="files")
        return extract_documents(name, data, "files", self.max_pages)

    def labelled(self, path: str, split: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        return read_labelled(path, split, limit)

    def edits(self, path: str, limit: int | None = None) -> list[EditSpec]:
        from app.adapters.storage.edit_files import load_edit_file

        return load_edit_file(path, limit)
