"""Prompt sessions over HTTP (DiffChat): start a session, take turns, choose a candidate, undo, branch."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from app.composition import Container
from app.domain.prompt_sessions import MAX_CANDIDATES, MAX_INSTRUCTION_CHARS, MAX_MODEL_NAME, MAX_PROMPT_CHARS
from app.entrypoints.http import deps
from app.entrypoints.http.openapi import errors
from app.entrypoints.http.schemas_prompt_sessions import PromptSessionOut, PromptSessionPageOut, TurnOut
from app.usecases.take_turn import TurnRequest

router = APIRouter(tags=["prompt sessions"])
UseCases = Annotated[Container, Depends(deps.container)]
OwnerDep = Annotated[str, Depends(deps.owner)]


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(
        description="The original intent (the anchor every turn is measured against).", max_length=MAX_PROMPT_CHARS
    )
    model: str | None = Field(None, description="The image model (default: the server's default model).")
    edit_model: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_MODEL_NAME,
        description="The model of the session's turns that edit the current image (`strategy` `edit` or `both`) "
        "when a turn names none; its family must edit by instruction (Qwen-Image-Edit, InstructPix2Pix). "
        "Default: the server's edit model, if it has one.",
    )


class TurnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instruction: str = Field(description="What to change, e.g. 把圆形换成蓝色.", max_length=MAX_INSTRUCTION_CHARS)
    n: int = Field(8, ge=1, le=64, description="Rewrites sampled.")
    k: int = Field(
        4, ge=1, le=MAX_CANDIDATES, description="Candidates rendered and ranked (of each kind with `strategy` `both`)."
    )
    seed: int | None = Field(None, ge=0, lt=2**32, description="One seed for every candidate (default: random).")
    rewrite: bool = Field(True, description="False: render the current prompt as it is.")
    steps: int = Field(20, ge=1, le=150)
    width: int | None = None
    height: int | None = None
    guidance_scale: float | None = None
    negative_prompt: str = ""
    strategy: Literal["rewrite", "edit", "both"] = Field(
        "rewrite",
        description="How the candidates are made. `rewrite`: the prompt is rewritten and each rewrite rendered. "
        "`edit`: the current image (the image of the head turn's chosen candidate) is edited as the instruction "
        "says by the edit model, `k` times with the seeds `seed` … `seed + k - 1`; the prompt stays, so choosing "
        "an edit changes the current image, not the current prompt. `both`: the rewrites and the edits, ranked "
        "together by the same rewards. `edit` and `both` need a current image (422 `no_current_image` at the "
        "original prompt or after a prompt written by hand).",
    )
    edit_model: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_MODEL_NAME,
        description="The model that draws the edits (default: the session's edit model, else the server's); "
        "a registered model of a family that edits by instruction (422 `unsupported_capability` otherwise).",
    )


class ChooseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: int | None = Field(None, ge=0, description="The candidate picked.")
    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS, description="Or a prompt written by hand.")


class BranchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    turn: int | None = Field(description="The turn the next one grows from (null: the original prompt).")


@router.post(
    "/v1/prompt-sessions",
    status_code=201,
    response_model=PromptSessionOut,
    summary="Start a prompt session",
    responses=errors(
        404, 422, 503, codes={404: ["unknown_model"], 422: ["invalid_parameters", "unsupported_capability"]}
    ),
)
def start(body: SessionIn, use: UseCases, owner: OwnerDep) -> PromptSessionOut:
    return PromptSessionOut.of(use.start_session()(body.prompt, body.model, owner, body.edit_model))


@router.get(
    "/v1/prompt-sessions",
    response_model=PromptSessionPageOut,
    summary="The caller's prompt sessions, most recently updated first",
    responses=errors(503),
)
def list_sessions(
    use: UseCases,
    owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=deps.MAX_OFFSET)] = 0,
) -> PromptSessionPageOut:
    items, total = use.prompt_sessions().list(owner, limit, offset)
    return PromptSessionPageOut(items=[PromptSessionOut.of(s) for s in items], total=total, limit=limit, offset=offset)


@router.get(
    "/v1/prompt-sessions/{session_id}",
    response_model=PromptSessionOut,
    summary="One session with its tree of turns",
    responses=errors(404, 503, codes={404: ["prompt_session_not_found"]}),
)
def get_session(session_id: str, use: UseCases, owner: OwnerDep) -> PromptSessionOut:
    return PromptSessionOut.of(use.prompt_sessions().get(session_id, owner))


@router.delete(
    "/v1/prompt-sessions/{session_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a session and its turns",
    responses={
        204: {"description": "Deleted. The jobs its turns rendered stay; `DELETE /v1/jobs/{id}` removes them."},
        **errors(404, 503, codes={404: ["prompt_session_not_found"]}),
    },
)
def delete_session(session_id: str, use: UseCases, owner: OwnerDep) -> Response:
    use.prompt_sessions().delete(session_id, owner)
    return Response(status_code=204)


@router.post(
    "/v1/prompt-sessions/{session_id}/turns",
    status_code=201,
    response_model=TurnOut,
    summary="Take a turn",
    responses=errors(
        404,
        409,
        422,
        429,
        500,
        503,
        507,
        codes={
            404: ["prompt_session_not_found", "unknown_model", "image_not_found"],
            409: ["concurrent_update"],
            422: [
                "invalid_parameters",
                "job_too_large",
                "no_current_image",
                "missing_edit_model",
                "unsupported_capability",
            ],
            429: ["rate_limited", "too_many_queued_jobs"],
            500: ["generation_failed", "cancelled", "render_timeout"],
        },
    ),
)
def take_turn(session_id: str, body: TurnIn, use: UseCases, owner: OwnerDep) -> TurnOut:
    """Rewrites the current prompt following the instruction, renders the first `k` distinct rewrites with
    one seed, scores them (content integrity, and the other rewards configured) and returns them ranked,
    best first; the best one is chosen. The turn is stored before the reply. When the rewriter gives
    nothing usable the current prompt is rendered and `note` says so. Each render is an ordinary job
    (queued, batched with jobs of the same key, listed in `GET /v1/jobs`); if one fails or is cancelled
    the turn fails with 500 and nothing of it is stored.

    With `strategy` `edit` the candidates are instruct-mode edits of the current image by the edit model
    (the instruction is their prompt; each keeps the current prompt); with `both` the rewrites and the edits
    are ranked together. Each candidate's `kind` says which it is."""
    options = body.model_dump(exclude={"instruction"})
    return TurnOut.of(use.take_turn()(session_id, TurnRequest(body.instruction, **options), owner))


@router.post(
    "/v1/prompt-sessions/{session_id}/turns/{turn}/choose",
    response_model=TurnOut,
    summary="Choose a candidate",
    responses=errors(404, 409, 503, codes={404: ["prompt_session_not_found", "turn_not_found"]}),
)
def choose(session_id: str, turn: int, body: ChooseIn, use: UseCases, owner: OwnerDep) -> TurnOut:
    """Pick candidate `index`, or send `prompt` to use one written by hand; the next turn grows from it."""
    return TurnOut.of(use.choose_candidate()(session_id, turn, index=body.index, prompt=body.prompt, owner=owner))


@router.post(
    "/v1/prompt-sessions/{session_id}/undo",
    response_model=PromptSessionOut,
    summary="Undo the last turn (back to its parent)",
    responses=errors(404, 409, 503, codes={404: ["prompt_session_not_found"]}),
)
def undo(session_id: str, use: UseCases, owner: OwnerDep) -> PromptSessionOut:
    return PromptSessionOut.of(use.move_head().undo(session_id, owner))


@router.post(
    "/v1/prompt-sessions/{session_id}/branch",
    response_model=PromptSessionOut,
    summary="Grow the next turn from an earlier one",
    responses=errors(404, 409, 503, codes={404: ["prompt_session_not_found", "turn_not_found"]}),
)
def branch(session_id: str, body: BranchIn, use: UseCases, owner: OwnerDep) -> PromptSessionOut:
    return PromptSessionOut.of(use.move_head().branch(session_id, body.turn, owner))
