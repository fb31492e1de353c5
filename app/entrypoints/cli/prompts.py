"""``atelier prompts``: prompt sessions outside the chat loop (list, show, train the preference reward)."""

from __future__ import annotations

import click

from app.entrypoints.cli.common import echo_json, open_atelier


@click.group()
def prompts() -> None:
    """Prompt sessions: list, show, train-preference (``atelier chat`` runs one)."""


@prompts.command("list")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_sessions(ctx: click.Context, limit: int, as_json: bool) -> None:
    """The stored sessions, most recently updated first."""
    atelier = open_atelier(ctx)
    items, total = atelier.prompts.list(limit=limit)
    if as_json:
        echo_json(
            {
                "items": [
                    {"id": s.id, "anchor": s.anchor, "current_prompt": s.current_prompt, "turns": len(s.turns)}
                    for s in items
                ],
                "total": total,
            }
        )
        return
    for s in items:
        click.echo(f"{s.id}  {s.updated_at:%Y-%m-%d %H:%M}  {len(s.turns):3d} turns  {s.current_prompt[:50]}")
    click.echo(f"{len(items)} of {total}")


@prompts.command("train-preference")
@click.option(
    "--simulate",
    type=click.Choice(["styled", "bold", "dark"]),
    help="Learn from a simulated demo-world user with this taste instead of the stored picks.",
)
@click.option("--turns", default=200, show_default=True, help="Simulated turns.")
@click.option("-k", "--candidates", "k", default=4, show_default=True, help="Candidates per simulated turn.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def train_preference(ctx: click.Context, simulate: str | None, turns: int, k: int, seed: int, as_json: bool) -> None:
    """Fit the Bradley–Terry preference reward (chosen candidate ≻ the others of its turn)."""
    atelier = open_atelier(ctx)
    report = atelier.prompts.train_preference(simulate=simulate, turns=turns, k=k, seed=seed)
    if as_json:
        echo_json(report)
        return
    held = report["held_out_accuracy"]
    click.echo(
        f"fitted on {report['pairs']} pairs from {report['turns']} turns ({report['source']}); "
        f"held-out pair accuracy {'-' if held is None else f'{held:.3f}'}; saved to {report['path']}"
    )
