"""``atelier prompts``: prompt sessions outside the chat loop (list, show, train the preference reward)."""

from __future__ import annotations

import click

from app.entrypoints.cli.common import echo_json, open_atelier, progress_bar


@click.group()
def prompts() -> None:
    """Prompt sessions: list, train-sft, train-preference (``atelier chat`` runs one)."""


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


@prompts.command("train-sft")
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False),
    help="InstructPE JSON (source_prompt, instruction, beautified_source_prompt, beautified_target_prompt); "
    "default: records generated from the demo world.",
)
@click.option("--steps", default=3000, show_default=True)
@click.option("--records", default=20000, show_default=True, help="Generated records (without --data).")
@click.option("--batch", default=32, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def train_sft(
    ctx: click.Context, data: str | None, steps: int, records: int, batch: int, lr: float, seed: int, as_json: bool
) -> None:
    """Train the demo world's Chinese prompt rewriter (a small causal LM, from scratch) into the data dir.

    Serve it with ATELIER_PROMPT_REWRITER=sft (or prompt_rewriter = "sft" in atelier.toml)."""
    atelier = open_atelier(ctx)
    with progress_bar("training the rewriter", as_json) as progress:
        summary = atelier.prompts.train_sft(
            data=data, progress=progress, steps=steps, records=records, batch=batch, lr=lr, seed=seed
        )
    if as_json:
        echo_json(summary)
        return
    click.echo(
        f"trained {summary['parameters']:,} parameters for {summary['steps']} steps in {summary['train_minutes']} min; "
        f"held-out exact match {summary['held_out_exact_match']:.3f}; saved to {summary['path']}"
    )
