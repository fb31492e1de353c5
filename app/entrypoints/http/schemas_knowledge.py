"""Pydantic shapes of the HTTP edge for knowledge queries (the core never sees them)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.domain.knowledge import Decision, KnowledgeQuery
from app.entrypoints.http.schemas import (
    Timestamp,
)
from app.usecases.ingest_documents import IngestReport


class SignalsOut(BaseModel):
    """What the retrieval decision was based on; null where a signal was not computed."""

    alpha: float | None
    mean_token_prob: float | None
    min_token_prob: float | None
    grad_alignment: float | None
    neighbour_gece: float | None
    gece_estimate: float | None
    threshold: float | None
    early_estimate: float | None
    aborted_at: int | None
    state_probe: float | None
    gate: str | None = Field(
        None,
        description="What decided: the gate the model's calibration chose by cross-validation (`detector`, "
        "`token_prob` or `combined`), or, without a calibration, `token_prob` (retrieve when the answer's minimum "
        "token probability is below `threshold`, 0.5); null when retrieval was not auto.",
    )
    calibration_id: str | None = Field(None, description="The calibration that decided; null: none did.")


class PassageOut(BaseModel):
    chunk_id: str
    source: str
    text: str
    score: float


class KnowledgeQueryOut(BaseModel):
    id: str
    owner: str
    question: str
    created_at: Timestamp
    answer: str
    decision: Decision
    parametric_answer: str
    signals: SignalsOut
    passages: list[PassageOut]
    timings: dict[str, float] = Field(description="Seconds per stage, `total` included.")
    model: str

    @classmethod
    def of(cls, query: KnowledgeQuery) -> KnowledgeQueryOut:
        return cls.model_validate(query, from_attributes=True)


class KnowledgeQueryPageOut(BaseModel):
    items: list[KnowledgeQueryOut]
    total: int
    limit: int
    offset: int


class IngestReportOut(BaseModel):
    documents: int
    chunks: int
    replaced: int = Field(description="Chunks dropped because their source was ingested again.")

    @classmethod
    def of(cls, report: IngestReport) -> IngestReportOut:
        return cls.model_validate(report, from_attributes=True)


class DocumentOut(BaseModel):
    id: str = Field(description="Stable across re-ingestion of the same source into the same collection.")
    source: str
    collection: str = Field(description="`shared`, or the owning key's own collection.")
    chunks: int
    characters: int


class DocumentPageOut(BaseModel):
    items: list[DocumentOut]
    total: int
    limit: int
    offset: int
