"""``atelier rewrite`` (first called ``atelier chat``, still accepted): a prompt session in the terminal,
an image prompt rewritten over several turns (instruction in, ranked candidates and images out)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

import click

from app.domain.errors import AtelierError
from app.domain.prompt_sessions import CandidateKind, PromptSession, Turn, TurnStrategy
from app.entrypoints.cli.common import AliasOption, open_atelier
from app.entrypoints.library import Atelier

HELP = """Commands (anything else is an instruction):
  :pick N        choose candidate N of the last turn shown
  :use TEXT      use TEXT (written by hand) as the prompt of the last turn shown
  :undo          go back to the turn before (the original prompt after the first)
  :branch N      grow the next turn from turn N (0: from the original prompt)
  :strategy S    how the next turns make candidates: rewrite (the prompt), edit (the current image) or both
  :show          the session: its turns and the current prompt
  :help          this list
  :quit          leave (the session is stored; continue it with --session)
An empty input (Ctrl-D, or the end of piped input) leaves too."""


def _image_path(atelier: Atelier, image_id: str | None) -> str | None:
    if image_id is None:
        return None
    try:
        return atelier.image_path(image_id)
    except AtelierError:
        return None


def _number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise click.UsageError(f"Not a number: {text!r}.") from None


def _turn_dict(atelier: Atelier, session: str, turn: Turn) -> dict[str, Any]:
    return {
        "session": session,
        "turn": turn.number,
        "parent": turn.parent,
        "instruction": turn.instruction,
        "prompt_before": turn.prompt_before,
        "chosen": turn.chosen,
        "chosen_index": turn.chosen_index,
        "seed": turn.settings.seed,
        "strategy": turn.strategy.value,
        "edit_model": turn.edit_model,
        "note": turn.note,
        "candidates": [{**c.to_dict(), "path": _image_path(atelier, c.image_id)} for c in turn.candidates],
    }


def _print_turn(atelier: Atelier, turn: Turn) -> None:
    how = "" if turn.strategy is TurnStrategy.REWRITE else f", {turn.strategy.value} with {turn.edit_model}"
    click.echo(f"turn {turn.number} (seed {turn.settings.seed}{how}): {turn.instruction}")
    if turn.note:
        click.echo(f"  note: {turn.note}")
    for i, c in enumerate(turn.candidates):
        mark = "*" if i == turn.chosen_index else " "
        scores = " ".join(f"{k}={v:.2f}" for k, v in c.scores.items())
        flag = "  (drifted)" if c.drifted else ""
        score = "-" if c.score is None else f"{c.score:.3f}"
        made = f"edit of {c.edited_image} (seed {c.seed}): " if c.kind is CandidateKind.EDIT else ""
        click.echo(f" {mark}[{i}] {score}  {made}{c.prompt}{flag}")
        click.echo(f"       {scores}  drift={c.drift:.2f}  {_image_path(atelier, c.image_id) or ''}")
    click.echo(f"  current prompt: {turn.chosen}")
    if turn.chosen_image:
        click.echo(f"  current image: {_image_path(atelier, turn.chosen_image) or turn.chosen_image}")


def _print_session(session: PromptSession) -> None:
    click.echo(f"session {session.id}  model {session.model}")
    click.echo(f"  original: {session.anchor}")
    on_path = {t.number for t in session.path()}
    for t in session.turns:
        mark = ">" if t.number == session.head else ("|" if t.number in on_path else " ")
        click.echo(f" {mark} {t.number} (from {t.parent or 0}): {t.instruction}  ->  {t.chosen}")
    click.echo(f"  current prompt: {session.current_prompt}")


@click.command("rewrite")
@click.argument("prompt", required=False)
@click.option("--session", "session_id", help="Continue a stored session instead of starting one.")
@click.option("--model", help="Image model (default: the default model).")
@click.option(
    "--rewrites",
    "-n",  # the first spelling, kept working; -n/--num-images elsewhere counts images
    "n",
    cls=AliasOption,
    hidden_names=["-n"],
    default=8,
    show_default=True,
    help="Rewrites of the prompt the language model samples per turn.",
)
@click.option(
    "-k", "--candidates", "k", default=4, show_default=True, help="Of those, the candidates rendered and ranked."
)
@click.option("--seed", type=int, help="One seed for every turn (default: a random one per turn).")
@click.option("--steps", default=20, show_default=True, help="Denoising steps of each rendered candidate.")
@click.option("--no-rewrite", is_flag=True, help="Render the prompt as it is (no rewriting).")
@click.option(
    "--strategy",
    type=click.Choice([s.value for s in TurnStrategy]),
    default=TurnStrategy.REWRITE.value,
    show_default=True,
    help="How a turn makes its candidates: rewrite the prompt, edit the current image with the instruction "
    "(needs a current image: the first turn rewrites), or both, ranked together. :strategy changes it.",
)
@click.option(
    "--edit-model",
    help="The model of edit turns, of a family that edits by instruction (Qwen-Image-Edit, InstructPix2Pix); "
    "a new session keeps it. Default: the session's, else ATELIER_EDIT_MODEL.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (for scripts).")
@click.pass_context
def rewrite(
    ctx: click.Context,
    prompt: str | None,
    session_id: str | None,
    model: str | None,
    n: int,
    k: int,
    seed: int | None,
    steps: int,
    no_rewrite: bool,
    strategy: str,
    edit_model: str | None,
    as_json: bool,
) -> None:
    """Rewrite the image prompt PROMPT over several turns (a prompt session). Each line read is an
    instruction for the prompt (把圆形换成蓝色, 加一个小三角形, 背景改成白色, 更精致一些); the language
    model rewrites the prompt, and the candidates are rendered with one seed, scored and ranked. Lines
    starting with ':' are commands (:pick N, :undo, :show, :help, :quit). Not a chat with the language
    model: `atelier ask` answers questions. Also accepted as `atelier chat`.

    \b
    Examples:
      atelier rewrite "一个红色的圆形在左上角，白色背景" --seed 7
      printf '把圆形换成蓝色\\n:pick 1\\n' | atelier rewrite "一个红色的圆形在中间" --json
      printf '把圆形换成蓝色\\n:strategy edit\\n加一个小三角形\\n' | atelier rewrite "一个红色的圆形" --edit-model qe
    """
    if (prompt is None) == (session_id is None):
        raise click.UsageError("Give a PROMPT to start a session, or --session ID to continue one.")
    atelier = open_atelier(ctx, start_worker=True, recover=False)  # a turn's renders are jobs a worker runs
    if session_id is None:
        assert prompt is not None
        session = atelier.prompts.start(prompt, model=model, edit_model=edit_model)
    else:
        session = atelier.prompts.get(session_id)

    def show(data: dict[str, Any], plain: Callable[[], None]) -> None:
        if as_json:
            click.echo(json.dumps(data, ensure_ascii=False))
        else:
            plain()

    def moved_to(moved: PromptSession) -> None:
        show(
            {"session": moved.id, "head": moved.head, "current_prompt": moved.current_prompt},
            lambda: click.echo(f"  current prompt: {moved.current_prompt}"),
        )

    show(
        {"session": session.id, "model": session.model, "current_prompt": session.current_prompt},
        lambda: click.echo(
            f"session {session.id} ({session.model}); :help lists the commands\n"
            f"  current prompt: {session.current_prompt}"
        ),
    )
    last: int | None = session.head
    stdin = sys.stdin  # CliRunner replaces it in tests
    while True:
        if not as_json and stdin.isatty():
            click.echo("> ", nl=False)
        line = stdin.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text in (":quit", ":q", ":exit"):
            break
        command, _, arg = text.partition(" ")
        arg = arg.strip()
        try:
            if command == ":help":
                click.echo(HELP)
            elif command == ":show":
                shown = atelier.prompts.get(session.id)
                show(
                    {"session": shown.id, "head": shown.head, "current_prompt": shown.current_prompt},
                    partial(_print_session, shown),
                )
            elif command == ":undo":
                moved = atelier.prompts.undo(session.id)
                last = moved.head
                moved_to(moved)
            elif command == ":branch":
                moved = atelier.prompts.branch(session.id, _number(arg or "0") or None)
                last = moved.head
                moved_to(moved)
            elif command in (":pick", ":use"):
                if last is None:
                    raise click.UsageError("No turn yet: give an instruction first.")
                if command == ":pick":
                    turn = atelier.prompts.choose(session.id, last, index=_number(arg))
                else:
                    turn = atelier.prompts.choose(session.id, last, prompt=arg)
                show(
                    _turn_dict(atelier, session.id, turn),
                    partial(click.echo, f"  current prompt: {turn.chosen}"),
                )
            elif command == ":strategy":
                if arg not in [s.value for s in TurnStrategy]:
                    raise click.UsageError(f"Use :strategy {'|'.join(s.value for s in TurnStrategy)}.")
                strategy = arg
                show({"session": session.id, "strategy": strategy}, partial(click.echo, f"  strategy: {strategy}"))
            elif command.startswith(":"):
                raise click.UsageError(f"Unknown command {command}; :help lists them.")
            else:
                turn = atelier.prompts.turn(
                    session.id,
                    text,
                    strategy=strategy,
                    edit_model=edit_model,
                    n=n,
                    k=k,
                    seed=seed,
                    steps=steps,
                    rewrite=not no_rewrite,
                )
                last = turn.number
                show(_turn_dict(atelier, session.id, turn), partial(_print_turn, atelier, turn))
        except (AtelierError, click.UsageError) as error:
            message = error.message if isinstance(error, AtelierError) else str(error)
            click.echo(f"error: {message}", err=True)  # the session goes on


chat = rewrite  # the command's first name
