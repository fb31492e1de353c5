"""Knowledge queries over HTTP: ask (retrieving only for long-tail knowledge), read back; ingest (JSON texts or
uploaded files), list and delete documents."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.composition import Container
from app.domain.errors import AtelierError, Forbidden, InvalidParameters
from app.domain.knowledge import MAX_QUESTION_CHARS, MAX_TOP_K, SHARED_COLLECTION
from app.entrypoints.http import deps
from app.entrypoints.http.auth import Caller
from app.entrypoints.http.compat_schemas import request_body
from app.entrypoints.http.openapi import errors
from app.entrypoints.http.schemas_knowledge import (
    DocumentOut,
    DocumentPageOut,
    IngestReportOut,
    KnowledgeQueryOut,
    KnowledgeQueryPageOut,
)

router = APIRouter(tags=["knowledge"])
UseCases = Annotated[Container, Depends(deps.container)]
OwnerDep = Annotated[str, Depends(deps.owner)]
CallerDep = Annotated[Caller, Depends(deps.caller)]


class QueryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(description=f"The question (at most {MAX_QUESTION_CHARS} characters).")
    top_k: int = Field(5, ge=1, le=MAX_TOP_K, description="Passages to retrieve when retrieving.")
    retrieval: Literal["auto", "always", "never"] = Field(
        "auto", description="`auto`: retrieve only when the calibrated detector judges the question long-tail."
    )


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="The document's name; ingesting the same name again replaces its chunks.")
    text: str = Field(description="Plain text or markdown.")


class DocumentsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documents: list[DocumentIn] = Field(min_length=1, max_length=1000)
    shared: bool = Field(
        False,
        description="Publish to the shared collection every key searches (admin keys only); by default the "
        "documents go to the caller's own collection, which only the caller's key searches.",
    )


@router.post(
    "/v1/knowledge/queries",
    status_code=201,
    response_model=KnowledgeQueryOut,
    summary="Ask a question",
    responses=errors(409, 503, codes={409: ["not_calibrated"], 503: ["index_unavailable", "model_unavailable"]}),
)
def ask(body: QueryIn, use: UseCases, owner: OwnerDep) -> KnowledgeQueryOut:
    """The model answers alone; when the calibrated detector judges the question long-tail, the top-k
    passages are retrieved and it answers again with them. A model without a calibration is never refused: it
    retrieves when a token of its own answer had a probability below 0.5 (`signals.gate` says which rule decided;
    409 `not_calibrated` only for a stored calibration too old to hold the state probe: calibrate again). The
    reply holds the answer, the `decision` (`parametric` or `retrieved`), the signals behind it, the passages with
    their scores and the seconds per stage. The query is stored before the reply (`GET /v1/knowledge/queries/{id}`)."""
    query = use.ask_question()(body.question, owner, top_k=body.top_k, retrieval=body.retrieval)
    return KnowledgeQueryOut.of(query)


@router.get(
    "/v1/knowledge/queries/{query_id}",
    response_model=KnowledgeQueryOut,
    summary="One answered question",
    responses=errors(404, 503, codes={404: ["knowledge_query_not_found"]}),
)
def get_query(query_id: str, use: UseCases, owner: OwnerDep) -> KnowledgeQueryOut:
    return KnowledgeQueryOut.of(use.knowledge_queries().get(query_id, owner))


@router.get(
    "/v1/knowledge/queries",
    response_model=KnowledgeQueryPageOut,
    summary="Answered questions, newest first",
    responses=errors(503),
)
def list_queries(
    use: UseCases,
    owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=deps.MAX_OFFSET)] = 0,
) -> KnowledgeQueryPageOut:
    page = use.knowledge_queries().list(owner, limit, offset)
    items = [KnowledgeQueryOut.of(q) for q in page.items]
    return KnowledgeQueryPageOut(items=items, total=page.total, limit=limit, offset=offset)


def _ingest_body() -> dict[str, Any]:
    """Either body, as the route reads it: JSON documents, or files as multipart form data."""
    json_body = request_body(DocumentsIn)["requestBody"]["content"]["application/json"]
    files = {
        "type": "object",
        "required": ["files"],
        "properties": {
            "files": {
                "type": "array",
                "items": {"type": "string", "format": "binary"},
                "description": "PDF, HTML, DOCX, Markdown, text or JSONL files (their kind by the file name).",
            },
            "shared": {
                "type": "boolean",
                "default": False,
                "description": DocumentsIn.model_fields["shared"].description,
            },
        },
    }
    content = {"application/json": json_body, "multipart/form-data": {"schema": files}}
    return {"requestBody": {"required": True, "content": content}}


@router.post(
    "/v1/knowledge/documents",
    status_code=201,
    response_model=IngestReportOut,
    summary="Ingest documents (JSON texts, or uploaded files)",
    openapi_extra=_ingest_body(),
    responses=errors(
        400,
        403,
        413,
        422,
        503,
        codes={
            400: ["invalid_json"],
            413: ["request_too_large"],
            422: ["unsupported_format"],
            503: ["index_unavailable"],
        },
    ),
)
async def ingest(request: Request, use: UseCases, caller: CallerDep) -> IngestReportOut:
    """Chunks, embeds and indexes documents into the caller's collection (or, `shared` with an admin key, the shared
    one); all are read and validated before any is stored. The body is JSON (`documents`: source and text each) or
    multipart form data (`files`: PDF, HTML, DOCX, Markdown, text or JSONL files, each at most
    `knowledge_max_file_mb`, a PDF at most `knowledge_max_pages` pages; the file name is the source). A source
    ingested again into the same collection replaces its chunks; another key's document of the same name is another
    document."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        documents, shared = await _uploaded(request, use)
    else:
        try:
            raw = json.loads(await request.body())
        except ValueError:
            raise AtelierError("The request body is not valid JSON.", code="invalid_json") from None  # 400
        try:
            body = DocumentsIn.model_validate(raw)
        except ValidationError as e:
            raise RequestValidationError(e.errors()) from None
        documents, shared = [(d.source, d.text) for d in body.documents], body.shared
    if shared and not caller.admin:
        raise Forbidden("Publishing to the shared collection needs an admin key.")
    collection = SHARED_COLLECTION if shared else caller.owner
    report = await run_in_threadpool(use.ingest_documents(), documents, None, collection)
    return IngestReportOut.of(report)


async def _uploaded(request: Request, use: Container) -> tuple[list[tuple[str, str]], bool]:
    try:
        form = await request.form()
    except HTTPException:  # starlette's refusal of a malformed multipart body
        raise InvalidParameters("The body is not multipart form data with files.", field="files") from None
    uploads = [item for item in form.getlist("files") if not isinstance(item, str)]
    if not uploads:
        raise InvalidParameters("Attach at least one file as `files`.", field="files")
    shared = str(form.get("shared") or "false").strip().lower() in ("true", "1", "yes", "on")
    reader = use.documents()
    documents = []
    for upload in uploads:
        name = os.path.basename(upload.filename or "") or "upload.txt"
        data = await upload.read()
        documents += await run_in_threadpool(reader.parse, name, data)
    return documents, shared


@router.get(
    "/v1/knowledge/documents",
    response_model=DocumentPageOut,
    summary="Ingested documents the caller searches",
    responses=errors(503, codes={503: ["index_unavailable"]}),
)
def list_documents(
    use: UseCases,
    owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=deps.MAX_OFFSET)] = 0,
    source: Annotated[str | None, Query(description="Only the document(s) of this source.")] = None,
) -> DocumentPageOut:
    """The caller's own collection's documents and the shared collection's, by collection and source, with their
    chunks and characters."""
    page = use.list_documents()(owner, limit, offset, source)
    items = [DocumentOut.model_validate(d, from_attributes=True) for d in page.items]
    return DocumentPageOut(items=items, total=page.total, limit=limit, offset=offset)


@router.delete(
    "/v1/knowledge/documents/{document_id}",
    response_model=DocumentOut,
    summary="Delete a document by id",
    responses=errors(403, 404, 503, codes={404: ["document_not_found"], 503: ["index_unavailable"]}),
)
def delete_document(document_id: str, use: UseCases, caller: CallerDep) -> DocumentOut:
    """Removes the document's chunks from both the vector and the keyword index; returns what it was. A shared
    document needs an admin key (403)."""
    found = use.delete_document()(caller.owner, caller.admin, document_id=document_id)
    return DocumentOut.model_validate(found, from_attributes=True)


@router.delete(
    "/v1/knowledge/documents",
    response_model=DocumentOut,
    summary="Delete a document by source",
    responses=errors(403, 404, 503, codes={404: ["document_not_found"], 503: ["index_unavailable"]}),
)
def delete_by_source(
    use: UseCases,
    caller: CallerDep,
    source: Annotated[str, Query(min_length=1, description="The document's source name.")],
    shared: Annotated[bool, Query(description="In the shared collection (admin keys only).")] = False,
) -> DocumentOut:
    """The document of that source in the caller's collection (or the shared one), from both indexes."""
    found = use.delete_document()(caller.owner, caller.admin, source=source, shared=shared)
    return DocumentOut.model_validate(found, from_attributes=True)
