"""Document files read into text: PDF, DOCX, HTML, Markdown and JSONL, with the refusals a user meets."""

from __future__ import annotations

import pytest

from app.adapters.storage.document_formats import extract_documents
from app.adapters.storage.documents import FileDocumentReader, read_documents
from app.domain.errors import InvalidParameters, RequestTooLarge
from tests.document_files import make_docx, make_html, make_pdf


def test_a_pdf_gives_its_pages_text_in_order() -> None:
    data = make_pdf(["Tuvalu is an island country.\nIts capital is Funafuti.", "Page two: the atolls."])
    [(source, text)] = extract_documents("atlas.pdf", data)
    assert source == "atlas.pdf"
    assert text.index("Funafuti") < text.index("atolls") and "Tuvalu is an island country." in text


def test_a_pdf_past_the_page_limit_is_refused_before_reading() -> None:
    with pytest.raises(RequestTooLarge, match="3 pages; at most 2"):
        extract_documents("big.pdf", make_pdf(["a", "b", "c"]), max_pages=2)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (make_pdf([None, None]), "no text layer"),
        (b"%PDF-1.4 this is not a pdf at all", "not a PDF"),
    ],
)
def test_an_unreadable_pdf_is_refused_by_name(data: bytes, message: str) -> None:
    with pytest.raises(InvalidParameters, match=message) as refused:
        extract_documents("scan.pdf", data)
    assert "scan.pdf" in refused.value.message and refused.value.field == "file"


def test_a_docx_gives_headings_paragraphs_and_table_cells() -> None:
    data = make_docx(
        [("Heading1", "图瓦卢"), (None, "图瓦卢的首都是富纳富提。"), ("Heading2", "Atolls"), (None, "Nine atolls.")],
        table=[["Population", "11 000"]],
    )
    [(_, text)] = extract_documents("tuvalu.docx", data)
    assert text.splitlines() == [
        "# 图瓦卢",
        "图瓦卢的首都是富纳富提。",
        "## Atolls",
        "Nine atolls.",
        "Population",
        "11 000",
    ]


def test_a_broken_docx_is_refused() -> None:
    with pytest.raises(InvalidParameters, match="not a DOCX"):
        extract_documents("broken.docx", b"PK\x03\x04 not really a zip")


def test_html_keeps_the_text_in_reading_order_without_scripts_or_styles() -> None:
    data = make_html("Tuvalu", ["Its capital is Funafuti.", "Fish &amp; chips are <b>rare</b>."])
    [(_, text)] = extract_documents("tuvalu.html", data)
    assert text.splitlines() == ["Home » Atlas", "Tuvalu", "Its capital is Funafuti.", "Fish & chips are rare."]
    assert "hidden" not in text and "color" not in text


def test_html_in_a_chinese_charset_is_decoded() -> None:
    data = make_html("图瓦卢", ["首都是富纳富提。"], charset="gbk")
    [(_, text)] = extract_documents("tuvalu.htm", data)
    assert text.splitlines()[1:] == ["图瓦卢", "首都是富纳富提。"]


def test_markdown_text_and_jsonl() -> None:
    assert extract_documents("a.md", "\ufeff# Title\n\nBody.".encode()) == [("a.md", "# Title\n\nBody.")]
    lines = b'{"text": "one", "title": "T", "source": "s1"}\n\n{"text": "two"}\n'
    assert extract_documents("docs.jsonl", lines) == [("s1", "T\n\none"), ("docs.jsonl#3", "two")]
    with pytest.raises(InvalidParameters, match="line 2"):
        extract_documents("docs.jsonl", b'{"text": "one"}\n["no"]\n')
    with pytest.raises(InvalidParameters, match="not UTF-8"):
        extract_documents("a.txt", "首都".encode("gbk"))


def test_an_unknown_kind_is_refused_with_what_can_be_read() -> None:
    with pytest.raises(InvalidParameters, match=r"\.pdf") as refused:
        extract_documents("slides.pptx", b"...")
    assert refused.value.code == "unsupported_format"


def test_a_folder_of_mixed_files_and_the_size_limit(tmp_path: pytest.TempPathFactory) -> None:
    folder = tmp_path / "docs"  # type: ignore[operator]
    folder.mkdir()
    (folder / "a.pdf").write_bytes(make_pdf(["Alpha page."]))
    (folder / "b.docx").write_bytes(make_docx([(None, "Beta paragraph.")]))
    (folder / "c.html").write_bytes(make_html("Gamma", ["Gamma text."]))
    (folder / "d.md").write_text("Delta.", encoding="utf-8")
    (folder / "skip.png").write_bytes(b"\x89PNG")
    docs = read_documents([str(folder)])
    assert [source.rsplit("/", 1)[-1] for source, _ in docs] == ["a.pdf", "b.docx", "c.html", "d.md"]
    assert "Alpha page." in docs[0][1] and docs[1][1] == "Beta paragraph."
    with pytest.raises(RequestTooLarge, match="larger than 1 MB"):
        FileDocumentReader(max_bytes=1024 * 1024).parse("huge.md", b"x" * (1024 * 1024 + 1))
