"""Model edits over HTTP: apply the next edit, read the edit log, roll back."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from app.domain.edits import DEFAULT_EDITOR, EDITORS, MAX_EDIT_CHARS, MAX_LOCALITY, MAX_REPHRASES, EditRequest
from app.entrypoints.http import deps
from app.entrypoints.library import Atelier

router = APIRouter(tags=["edits"])
AtelierDep = Annotated[Atelier, Depends(deps.atelier)]
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


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: int = Field(description="Keep the first `to` active edits (0: the original model).")


def _edit(edit: EditRequest) -> dict[str, Any]:
    data = asdict(edit)
    data["status"] = edit.status.value
    data["created_at"] = edit.created_at.isoformat()
    data["rolled_back_at"] = edit.rolled_back_at.isoformat() if edit.rolled_back_at else None
    return data


@router.post("/v1/edits", status_code=201, summary="Apply the next edit to the served language model")
def apply(body: EditIn, atelier: AtelierDep, owner: OwnerDep) -> dict[str, Any]:
    """Applies the edit on top of the active ones with the chosen editor, scores it (reliability,
    generality, locality) and stores it in the edit log before replying. Knowledge queries answer with
    the edited model from then on. 409 `editor_not_trained` names the command that trains a DAFNet or
    MEND checkpoint; 409 `editor_mismatch` when the active edits were made by another editor."""
    edit = atelier.edits.apply(
        body.prompt,
        body.target,
        editor=body.editor,
        subject=body.subject,
        rephrases=body.rephrases,
        locality=[(p.prompt, p.answer) for p in body.locality],
        owner=owner,
    )
    return _edit(edit)


@router.get("/v1/edits", summary="The edit log, newest first")
def list_edits(
    atelier: AtelierDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    active: Annotated[bool, Query(description="Only the active edits, in the order they apply.")] = False,
) -> dict[str, Any]:
    if active:
        items = atelier.edits.active()
        return {"items": [_edit(e) for e in items], "total": len(items), "limit": len(items), "offset": 0}
    page, total = atelier.edits.log(limit, offset)
    return {"items": [_edit(e) for e in page], "total": total, "limit": limit, "offset": offset}


@router.get("/v1/edits/{edit_id}", summary="One edit")
def get_edit(edit_id: str, atelier: AtelierDep) -> dict[str, Any]:
    return _edit(atelier.edits.get(edit_id))


@router.post("/v1/edits/rollback", summary="Roll the served model back to an earlier point")
def rollback(body: RollbackIn, atelier: AtelierDep) -> dict[str, Any]:
    """Keeps the first `to` active edits; 422 `rollback_out_of_range` past the start or the end."""
    undone = atelier.edits.rollback(body.to)
    return {"rolled_back": [_edit(e) for e in undone], "active": body.to}
