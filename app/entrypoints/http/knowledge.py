"""Knowledge queries over HTTP: ask (retrieving only for long-tail knowledge), read back, ingest documents."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from app.domain.knowledge import MAX_QUESTION_CHARS, MAX_TOP_K, KnowledgeQuery
from app.entrypoints.http import deps
from app.entrypoints.library import Atelier

router = APIRouter(tags=["knowledge"])
AtelierDep = Annotated[Atelier, Depends(deps.atelier)]
OwnerDep = Annotated[str, Depends(deps.owner)]


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


def _query(query: KnowledgeQuery) -> dict[str, Any]:
    data = asdict(query)
    data["decision"] = query.decision.value
    data["created_at"] = query.created_at.isoformat()
    return data


@router.post("/v1/knowledge/queries", status_code=201, summary="Ask a question")
def ask(body: QueryIn, atelier: AtelierDep, owner: OwnerDep) -> dict[str, Any]:
    """The model answers alone; when the calibrated detector judges the question long-tail, the top-k
    passages are retrieved and it answers again with them. The reply holds the answer, the
    `decision` (`parametric` or `retrieved`), the signals behind it, the passages with their scores
    and the seconds per stage. The query is stored before the reply (`GET /v1/knowledge/queries/{id}`)."""
    return _query(atelier.knowledge.ask(body.question, owner=owner, top_k=body.top_k, retrieval=body.retrieval))


@router.get("/v1/knowledge/queries/{query_id}", summary="One answered question")
def get_query(query_id: str, atelier: AtelierDep, owner: OwnerDep) -> dict[str, Any]:
    return _query(atelier.knowledge.query(query_id, owner))


@router.get("/v1/knowledge/queries", summary="Answered questions, newest first")
def list_queries(
    atelier: AtelierDep,
    owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    page = atelier.knowledge.queries(owner, limit, offset)
    return {"items": [_query(q) for q in page.items], "total": page.total, "limit": limit, "offset": offset}


@router.post("/v1/knowledge/documents", status_code=201, summary="Ingest documents into the knowledge index")
def ingest(body: DocumentsIn, atelier: AtelierDep, owner: OwnerDep) -> dict[str, Any]:
    """Chunks, embeds and indexes the documents; all are validated before any is stored."""
    report = atelier.knowledge.ingest_texts([(d.source, d.text) for d in body.documents])
    return asdict(report)
