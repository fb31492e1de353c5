"""The text of a document file, by its kind: plain text and Markdown, HTML, DOCX, PDF and JSONL.

- **Text and Markdown** are read as UTF-8 (a byte-order mark is dropped).
- **HTML**: the text of the body in reading order, a line per block element (paragraphs, headings, list items,
  table rows, ``<br>``), the ``<title>`` first unless a heading at the top repeats it; scripts, styles and
  templates dropped; entities decoded. The bytes are read as UTF-8, else as the charset the page declares, else as
  GB 18030 (which reads GBK and GB 2312 pages).
- **DOCX** (Office Open XML): the paragraphs of ``word/document.xml`` in order (table cells included), headings
  marked ``#`` as Markdown would, tabs and line breaks kept. Read with the standard library: no Word needed.
- **PDF**: each page's text layer (``pypdf``), pages separated by a blank line. A PDF with more than
  ``max_pages`` pages is refused before any page is read; an encrypted one that opens without a password is
  read; a PDF without a text layer (scanned pages) is refused: it would need OCR.
- **JSONL**: a document per line (``text``, optional ``title`` and ``source`` or ``id``).

Everything refused raises ``InvalidParameters`` (or ``RequestTooLarge`` for a size or page limit) naming the
file, never the server's paths or the parser's exception text.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any
from xml.etree import ElementTree

from app.domain.errors import InvalidParameters, RequestTooLarge

TEXT_SUFFIXES = (".txt", ".md", ".markdown")
HTML_SUFFIXES = (".html", ".htm")
DOCUMENT_SUFFIXES = (*TEXT_SUFFIXES, *HTML_SUFFIXES, ".docx", ".pdf", ".jsonl")
MAX_PAGES = 500  # a PDF with more pages is refused (settings: knowledge_max_pages)
_BLOCKS = frozenset(
    {"p", "div", "section", "article", "header", "footer", "main", "aside", "nav", "li", "ul", "ol", "tr", "table"}
    | {"h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "figure", "figcaption", "dt", "dd", "br", "hr"}
    | {"title", "address", "details", "summary"}
)
_SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "head"})
_CHARSET = re.compile(rb"""charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def suffix_of(name: str) -> str:
    match = re.search(r"\.[A-Za-z0-9]+$", name)
    return match.group().lower() if match else ""


def extract_documents(name: str, data: bytes, field: str = "file", max_pages: int = MAX_PAGES) -> list[tuple[str, str]]:
    """(source, text) pairs of the file ``name`` holding ``data``: one, or one per line of a JSONL file (whose
    sources are the lines' ``source`` or ``id``, else ``name#line``)."""
    suffix = suffix_of(name)
    if suffix not in DOCUMENT_SUFFIXES:
        raise InvalidParameters(
            f"{name}: only {', '.join(DOCUMENT_SUFFIXES)} files can be ingested.",
            code="unsupported_format",
            field=field,
        )
    if suffix == ".jsonl":
        return _jsonl_documents(name, _utf8(name, data, field), field)
    readers: dict[str, Callable[[str, bytes, str], str]] = {
        ".html": _html,
        ".htm": _html,
        ".docx": _docx,
        ".pdf": lambda n, d, f: _pdf(n, d, f, max_pages),
    }
    text = readers.get(suffix, _utf8)(name, data, field)
    return [(name, text)]


def _utf8(name: str, data: bytes, field: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvalidParameters(f"{name} is not UTF-8 text.", field=field) from e


def jsonl_records(text: str, name: str, field: str) -> list[tuple[int, dict[str, Any]]]:
    """The JSON objects of a JSONL text with their line numbers (blank lines skipped); a bad line is refused by
    number."""
    records = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise InvalidParameters(f"{name} line {n} is not JSON: {e.msg}.", field=field) from e
        if not isinstance(record, dict):
            raise InvalidParameters(f"{name} line {n} is not a JSON object.", field=field)
        records.append((n, record))
    return records


def _jsonl_documents(name: str, text: str, field: str) -> list[tuple[str, str]]:
    docs = []
    for n, record in jsonl_records(text, name, field):
        body = record.get("text")
        if not isinstance(body, str):
            raise InvalidParameters(f"{name} line {n}: a document needs a 'text' string.", field=field)
        title = record.get("title")
        source = record.get("source") or record.get("id") or f"{name}#{n}"
        docs.append((str(source), f"{title}\n\n{body}" if isinstance(title, str) and title else body))
    return docs


# --- HTML ------------------------------------------------------------------------------------------------------


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.title: list[str] = []
        self._current: list[str] = []
        self._skipping = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _SKIPPED:
            self._skipping += 1
        elif tag in _BLOCKS:
            self._break()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _SKIPPED:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCKS:
            self._break()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        elif not self._skipping:
            self._current.append(data)

    def _break(self) -> None:
        line = re.sub(r"\s+", " ", "".join(self._current)).strip()
        if line:
            self.lines.append(line)
        self._current = []

    def text(self) -> str:
        self._break()
        title = re.sub(r"\s+", " ", "".join(self.title)).strip()
        lines = self.lines if not title or title in self.lines[:5] else [title, *self.lines]  # a heading repeats it
        return "\n".join(lines)


def _decode_html(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    declared = _CHARSET.search(data[:4096])
    for charset in ([declared.group(1).decode("ascii")] if declared else []) + ["gb18030"]:
        try:
            return data.decode(charset)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("utf-8", errors="replace")


def _html(name: str, data: bytes, field: str) -> str:
    parser = _HtmlText()
    parser.feed(_decode_html(data))
    parser.close()
    return parser.text()


# --- DOCX ------------------------------------------------------------------------------------------------------


def _docx(name: str, data: bytes, field: str) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            info = archive.getinfo("word/document.xml")
            if info.file_size > 64 * len(data) + 10_000_000:  # a zip bomb, not a document
                raise RequestTooLarge(f"{name} unpacks to more than a document can hold.", field=field)
            xml = archive.read(info)
        root = ElementTree.fromstring(xml)
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError, OSError) as e:
        raise InvalidParameters(f"{name} is not a DOCX document that can be read.", field=field) from e
    lines = []
    for paragraph in root.iter(f"{_W}p"):
        parts = []
        for node in paragraph.iter():
            if node.tag == f"{_W}t" and node.text:
                parts.append(node.text)
            elif node.tag == f"{_W}tab":
                parts.append("\t")
            elif node.tag in (f"{_W}br", f"{_W}cr"):
                parts.append("\n")
        line = "".join(parts).strip()
        if line:
            lines.append(_heading_mark(paragraph) + line)
    return "\n".join(lines)


def _heading_mark(paragraph: Any) -> str:
    style = paragraph.find(f"{_W}pPr/{_W}pStyle")
    value = "" if style is None else str(style.get(f"{_W}val") or "")
    match = re.fullmatch(r"(?:Heading|heading)\s*([1-6])", value) or (re.fullmatch(r"Title", value) and "1")
    if not match:
        return ""
    level = int(match if isinstance(match, str) else match.group(1))
    return "#" * level + " "


# --- PDF -------------------------------------------------------------------------------------------------------


def _pdf(name: str, data: bytes, field: str, max_pages: int) -> str:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError as e:  # a dependency of the project; its absence is a broken install
        raise InvalidParameters("PDF files cannot be read here: pypdf is not installed.", field=field) from e
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise InvalidParameters(f"{name} is encrypted with a password.", field=field)
        pages = len(reader.pages)
        if pages > max_pages:
            raise RequestTooLarge(f"{name} has {pages} pages; at most {max_pages} can be ingested.", field=field)
        texts = [(page.extract_text() or "").strip() for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as e:
        raise InvalidParameters(f"{name} is not a PDF that can be read.", field=field) from e
    text = "\n\n".join(t for t in texts if t)
    if not text.strip():
        raise InvalidParameters(f"{name} has no text layer (scanned pages need OCR first).", field=field)
    return text
