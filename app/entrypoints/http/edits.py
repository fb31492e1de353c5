"""Model edits over HTTP: apply the next edit, read the edit log, roll back."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from app.composition import Container
from app.domain.edits import (
    DEFAULT_EDITOR,
    EDITORS,
    MAX_EDIT_CHARS,
    MAX_LOCALITY,
    MAX_REPHRASES,
    EditSpec,
    LocalityProbe,
)
from app.entrypoints.http import deps
from app.entrypoints.http.openapi import errors
from app.entrypoints.http.schemas_edits import EditOut, EditPageOut, RollbackOut

router = APIRouter(tags=["edits"])
UseCases = Annotated[Container, Depends(deps.container)]
OwnerDep = Annotated[str, Depends(deps.owner)]


class ProbeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(max_length=MAX_EDIT_CHARS)
    answer: str = Field(max_length=MAX_EDIT_CHARS)


class EditIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="The question, as the model is asked it.", max_length=MAX_EDIT_CHARS)
    target: str = Field(description="The new answer.", max_length=MAX_EDIT_CHARS)
    subject: str = Field("", description="The subject of the fact (must occur in the prompt).")
    rephrases: list[str] = Field(default_factory=list, max_length=MAX_REPHRASES)
    locality: list[ProbeIn] = Field(
        default_factory=list, max_length=MAX_LOCALITY, description="Prompts whose answers must not change."
    )
    editor: str = Field(DEFAULT_EDITOR, description=f"One of {', '.join(EDITORS)}.")

    def spec(self) -> EditSpec:
        """The edit as the domain states it (validated there)."""
        return EditSpec(
            self.prompt,
            self.target,
            subject=self.subject,
            rephrases=tuple(self.rephrases),
            locality=tuple(LocalityProbe(p.prompt, p.answer) for p in self.locality),
        )


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: int = Field(description="Keep the first `to` active edits (0: the original model).")


@router.post(
    "/v1/edits",
    status_code=201,
    response_model=EditOut,
    summary="Apply the next edit to the served language model",
    responses=errors(409, 503, codes={409: ["editor_not_trained", "editor_mismatch", "concurrent_update"]}),
)
def apply(body: EditIn, use: UseCases, owner: OwnerDep) -> EditOut:
    """Applies the edit on top of the active ones with the chosen editor, scores it (reliability,
    generality, locality) and stores it in the edit log before replying. Knowledge queries answer with
    the edited model from then on. 409 `editor_not_trained` names the command that trains a DAFNet or
    MEND checkpoint; 409 `editor_mismatch` when the active edits were made by another editor."""
    return EditOut.of(use.apply_edit()(body.spec(), body.editor, owner))


@router.get("/v1/edits", response_model=EditPageOut, summary="The edit log, newest first", responses=errors(503))
def list_edits(
    use: UseCases,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=deps.MAX_OFFSET)] = 0,
    active: Annotated[bool, Query(description="Only the active edits, in the order they apply.")] = False,
) -> EditPageOut:
    if active:
        items = use.read_edit_log().active()
        return EditPageOut(items=[EditOut.of(e) for e in items], total=len(items), limit=len(items), offset=0)
    page, total = use.read_edit_log().page(limit, offset)
    return EditPageOut(items=[EditOut.of(e) for e in page], total=total, limit=limit, offset=offset)


@router.get(
    "/v1/edits/{edit_id}",
    response_model=EditOut,
    summary="One edit",
    responses=errors(404, 503, codes={404: ["edit_not_found"]}),
)
def get_edit(edit_id: str, use: UseCases) -> EditOut:
    return EditOut.of(use.read_edit_log().get(edit_id))


@router.post(
    "/v1/edits/rollback",
    response_model=RollbackOut,
    summary="Roll the served model back to an earlier point",
    responses=errors(409, 503, codes={409: ["editor_not_trained", "editor_mismatch"]}),
)
def rollback(body: RollbackIn, use: UseCases) -> RollbackOut:
    """Keeps the first `to` active edits; 422 `rollback_out_of_range` past the start or the end."""
    undone = use.rollback_edits()(body.to)
    return RollbackOut(rolled_back=[EditOut.of(e) for e in undone], active=body.to)
