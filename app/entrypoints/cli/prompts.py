"""``atelier prompts``: prompt sessions outside the ``atelier rewrite`` loop (list; train the rewriter, the reward)."""

from __future__ import annotations

import click

from app.entrypoints.cli.common import echo_json, echo_table, open_atelier, progress_bar, quiet_option


@click.group()
def prompts() -> None:
    """Prompt sessions: list the stored ones; train the prompt rewriter (train-sft, train-rl) and the
    preference reward (train-preference). `atelier rewrite` starts or continues a session."""


@prompts.command("list")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_sessions(ctx: click.Context, limit: int, as_json: bool) -> None:
    """The stored sessions, most recently updated first, under a header naming the columns (--json for scripts)."""
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
    echo_table(
        ("ID", "UPDATED", "TURNS", "CURRENT PROMPT"),
        ([s.id, f"{s.updated_at:%Y-%m-%d %H:%M}", str(len(s.turns)), s.current_prompt[:50]] for s in items),
        right=[2],
    )
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
    from app.lab.prompts.runs import train_preference as run

    report = run(open_atelier(ctx).container, simulate=simulate, turns=turns, k=k, seed=seed)
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
@quiet_option
@click.pass_context
def train_sft(
    ctx: click.Context,
    data: str | None,
    steps: int,
    records: int,
    batch: int,
    lr: float,
    seed: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Train the demo world's Chinese prompt rewriter (a small causal LM, from scratch) into the data dir.

    Serve it with ATELIER_PROMPT_REWRITER=sft (or prompt_rewriter = "sft" in atelier.toml)."""
    from app.lab.prompts.runs import train_sft as run

    atelier = open_atelier(ctx)
    with progress_bar("training the rewriter", quiet or as_json, "steps") as progress:
        summary = run(
            atelier.container, data=data, progress=progress, steps=steps, records=records, batch=batch, lr=lr, seed=seed
        )
    if as_json:
        echo_json(summary)
        return
    click.echo(
        f"trained {summary['parameters']:,} parameters for {summary['steps']} steps in {summary['train_minutes']} min; "
        f"held-out exact match {summary['held_out_exact_match']:.3f}; saved to {summary['path']}"
    )


@prompts.command("train-rl")
@click.option("--model", default="demo", show_default=True, help="Image model whose renders are rewarded.")
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False),
    help="InstructPE JSON for the rollouts' inputs; default: records generated from the demo world.",
)
@click.option("--steps", default=60, show_default=True, help="PPO iterations.")
@click.option("--rollouts", default=16, show_default=True, help="Episodes (renders) per iteration.")
@click.option("--group", default=4, show_default=True, help="Episodes per record (same seed); must divide --rollouts.")
@click.option(
    "--baseline",
    type=click.Choice(["loo", "none"]),
    default="loo",
    show_default=True,
    help="Reward baseline: the mean reward of the other episodes of the same record (leave-one-out), or none.",
)
@click.option("--epochs", default=4, show_default=True, help="PPO epochs per iteration.")
@click.option("--lr", default=3e-5, show_default=True)
@click.option("--kl", default=0.05, show_default=True, help="Per-token KL penalty against the SFT model.")
@click.option("--adm/--no-adm", default=True, show_default=True, help="Action-space dynamic modification.")
@click.option(
    "--state-value",
    type=click.Choice(["integrity", "plain"]),
    default="integrity",
    show_default=True,
    help="Value estimate: the value head plus the prefix's content integrity, or the value head alone.",
)
@click.option("--render-steps", default=20, show_default=True, help="Denoising steps of each rendered rollout.")
@click.option(
    "--reward",
    type=click.Choice(["render", "text"]),
    default="render",
    show_default=True,
    help="Score rollouts by their renders (the turns' combined reward) or, without rendering, by the integrity "
    "of the rewrite's own text (a diagnostic: the reward without the image model's noise).",
)
@click.option("--held-out", default=64, show_default=True, help="Held-out records scored before and after.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@quiet_option
@click.pass_context
def train_rl(
    ctx: click.Context,
    model: str,
    data: str | None,
    steps: int,
    rollouts: int,
    group: int,
    baseline: str,
    epochs: int,
    lr: float,
    kl: float,
    adm: bool,
    state_value: str,
    render_steps: int,
    reward: str,
    held_out: int,
    seed: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """PPO on the SFT rewriter with the turns' combined reward of real renders (run train-sft first).

    Serve it with ATELIER_PROMPT_REWRITER=sft_rl (or prompt_rewriter = "sft_rl" in atelier.toml)."""
    from app.lab.prompts.runs import train_rl as run

    atelier = open_atelier(ctx, start_worker=True, recover=False)  # the rollouts' renders are jobs a worker runs
    with progress_bar("reinforcing the rewriter", quiet or as_json, "iterations") as progress:
        summary = run(
            atelier.container,
            model=model,
            data=data,
            progress=progress,
            steps=steps,
            rollouts=rollouts,
            group=group,
            baseline=baseline,
            epochs=epochs,
            lr=lr,
            kl=kl,
            adm=adm,
            state_value=state_value,
            render_steps=render_steps,
            reward=reward,
            held_out=held_out,
            seed=seed,
        )
    if as_json:
        echo_json(summary)
        return
    before, after = summary["held_out_before"], summary["held_out_after"]
    click.echo(
        f"{summary['steps']} PPO iterations in {summary['train_minutes']} min; rollout reward "
        f"{summary['reward_first']:.3f} → {summary['reward_last']:.3f}; held-out reward "
        f"{before.get('reward', 0):.3f} → {after.get('reward', 0):.3f}, exact "
        f"{before.get('exact', 0):.3f} → {after.get('exact', 0):.3f}; saved to {summary['path']}"
    )
