"""Knowledge queries over HTTP: ask (retrieving only for long-tail knowledge), read back, ingest documents."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from app.composition import Container
from app.domain.errors import Forbidden
from app.domain.knowledge import MAX_QUESTION_CHARS, MAX_TOP_K, SHARED_COLLECTION
from app.entrypoints.http import deps
from app.entrypoints.http.auth import Caller
from app.entrypoints.http.openapi import errors
from app.entrypoints.http.schemas_knowledge import IngestReportOut, KnowledgeQueryOut, KnowledgeQueryPageOut

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


@router.post(
    "/v1/knowledge/documents",
    status_code=201,
    response_model=IngestReportOut,
    summary="Ingest documents into the knowledge index",
    responses=errors(403, 503, codes={503: ["index_unavailable"]}),
)
def ingest(body: DocumentsIn, use: UseCases, caller: CallerDep) -> IngestReportOut:
    """Chunks, embeds and indexes the documents into the caller's collection (or, `shared` with an admin key,
    the shared one); all are validated before any is stored. A source ingested again into the same collection
    replaces its chunks; another key's document of the same name is another document."""
    if body.shared and not caller.admin:
        raise Forbidden("Publishing to the shared collection needs an admin key.")
    collection = SHARED_COLLECTION if body.shared else caller.owner
    report = use.ingest_documents()([(d.source, d.text) for d in body.documents], None, collection)
    return IngestReportOut.of(report)
