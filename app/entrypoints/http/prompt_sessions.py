"""Prompt sessions over HTTP (DiffChat): start a session, take turns, choose a candidate, undo, branch."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from app.domain.prompt_sessions import MAX_CANDIDATES, MAX_INSTRUCTION_CHARS, MAX_PROMPT_CHARS, PromptSession, Turn
from app.entrypoints.http import deps
from app.entrypoints.library import Atelier

router = APIRouter(tags=["prompt sessions"])
AtelierDep = Annotated[Atelier, Depends(deps.atelier)]
OwnerDep = Annotated[str, Depends(deps.owner)]


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(
        description="The original intent (the anchor every turn is measured against).", max_length=MAX_PROMPT_CHARS
    )
    model: str | None = Field(None, description="The image model (default: the server's default model).")


class TurnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instruction: str = Field(description="What to change, e.g. 把圆形换成蓝色.", max_length=MAX_INSTRUCTION_CHARS)
    n: int = Field(8, ge=1, le=64, description="Rewrites sampled.")
    k: int = Field(4, ge=1, le=MAX_CANDIDATES, description="Candidates rendered and ranked.")
    seed: int | None = Field(None, ge=0, lt=2**32, description="One seed for every candidate (default: random).")
    rewrite: bool = Field(True, description="False: render the current prompt as it is.")
    steps: int = Field(20, ge=1, le=150)
    width: int | None = None
    height: int | None = None
    guidance_scale: float | None = None
    negative_prompt: str = ""


class ChooseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: int | None = Field(None, ge=0, description="The candidate picked.")
    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS, description="Or a prompt written by hand.")


class BranchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    turn: int | None = Field(description="The turn the next one grows from (null: the original prompt).")


def _turn(turn: Turn) -> dict[str, Any]:
    return {
        "number": turn.number,
        "parent": turn.parent,
        "instruction": turn.instruction,
        "prompt_before": turn.prompt_before,
        "candidates": [
            {**c.to_dict(), "image_url": f"/v1/images/{c.image_id}" if c.image_id else None} for c in turn.candidates
        ],
        "chosen": turn.chosen,
        "chosen_index": turn.chosen_index,
        "settings": turn.settings.to_dict(),
        "rewrite": turn.rewrite,
        "note": turn.note,
        "created_at": turn.created_at.isoformat() if turn.created_at else None,
    }


def _session(session: PromptSession) -> dict[str, Any]:
    return {
        "id": session.id,
        "owner": session.owner,
        "model": session.model,
        "anchor": session.anchor,
        "head": session.head,
        "current_prompt": session.current_prompt,
        "path": [t.number for t in session.path()],
        "turns": [_turn(t) for t in session.turns],
        "created_at": session.created_at.isoformat(),
        "updated_at": session.updated_at.isoformat(),
    }


@router.post("/v1/prompt-sessions", status_code=201, summary="Start a prompt session")
def start(body: SessionIn, atelier: AtelierDep, owner: OwnerDep) -> dict[str, Any]:
    return _session(atelier.prompts.start(body.prompt, model=body.model, owner=owner))


@router.get("/v1/prompt-sessions", summary="The caller's prompt sessions, most recently updated first")
def list_sessions(
    atelier: AtelierDep,
    owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    items, total = atelier.prompts.list(owner, limit, offset)
    return {"items": [_session(s) for s in items], "total": total, "limit": limit, "offset": offset}


@router.get("/v1/prompt-sessions/{session_id}", summary="One session with its tree of turns")
def get_session(session_id: str, atelier: AtelierDep, owner: OwnerDep) -> dict[str, Any]:
    return _session(atelier.prompts.get(session_id, owner))


@router.post("/v1/prompt-sessions/{session_id}/turns", status_code=201, summary="Take a turn")
def take_turn(session_id: str, body: TurnIn, atelier: AtelierDep, owner: OwnerDep) -> dict[str, Any]:
    """Rewrites the current prompt following the instruction, renders the first `k` distinct rewrites with
    one seed, scores them (content integrity, and the other rewards configured) and returns them ranked,
    best first; the best one is chosen. The turn is stored before the reply. When the rewriter gives
    nothing usable the current prompt is rendered and `note` says so."""
    options = body.model_dump(exclude={"instruction"})
    return _turn(atelier.prompts.turn(session_id, body.instruction, owner=owner, **options))


@router.post("/v1/prompt-sessions/{session_id}/turns/{turn}/choose", summary="Choose a candidate")
def choose(session_id: str, turn: int, body: ChooseIn, atelier: AtelierDep, owner: OwnerDep) -> dict[str, Any]:
    """Pick candidate `index`, or send `prompt` to use one written by hand; the next turn grows from it."""
    return _turn(atelier.prompts.choose(session_id, turn, index=body.index, prompt=body.prompt, owner=owner))


@router.post("/v1/prompt-sessions/{session_id}/undo", summary="Undo the last turn (back to its parent)")
def undo(session_id: str, atelier: AtelierDep, owner: OwnerDep) -> dict[str, Any]:
    return _session(atelier.prompts.undo(session_id, owner))


@router.post("/v1/prompt-sessions/{session_id}/branch", summary="Grow the next turn from an earlier one")
def branch(session_id: str, body: BranchIn, atelier: AtelierDep, owner: OwnerDep) -> dict[str, Any]:
    return _session(atelier.prompts.branch(session_id, body.turn, owner))
