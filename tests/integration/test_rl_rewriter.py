"""RL of the demo world's rewriter: the ADM behaviour policies, GAE, the content-integrity state value, a short
PPO run that raises a learnable reward, and the whole path through the library and the CLI (real renders
of the demo model, ``prompt_rewriter = "sft_rl"``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from app.adapters.rewards.integrity import text_integrity, text_integrity_scores
from app.adapters.rewriting.causal_lm import plain_prompt
from app.adapters.storage.artifacts import rl_dir, sft_dir
from app.demo_world.parsing import parse_caption
from app.domain.errors import InvalidParameters, ModelUnavailable
from app.domain.prompt_sessions import COMBINED, ScoreItem
from app.entrypoints.cli.main import cli
from app.entrypoints.library import Atelier
from app.lab.prompts.rl import (
    RlConfig,
    _gae,
    _load,
    _prefix_integrity,
    _Sampler,
    _shaped_rewards,
    sampling_reach,
    train_rl,
)
from app.lab.prompts.runs import train_rl as train_served_rl
from app.lab.prompts.sft import SftConfig, generate_records, train_sft
from tests.integration.test_sft_rewriter import TINY


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A data dir holding a tiny SFT rewriter (trained once for the module)."""
    data = str(tmp_path_factory.mktemp("rl-data"))
    train_sft(sft_dir(data), SftConfig(**{**TINY, "steps": 60}))
    return data


def _sampler(data: str, **config: object) -> tuple[_Sampler, object]:
    tokenizer, lm = _load(sft_dir(data))
    return _Sampler(lm, tokenizer, RlConfig(**config), torch.Generator().manual_seed(0)), tokenizer  # type: ignore[arg-type]


def test_behaviour_policies_of_the_modified_action_space(sft_data: str) -> None:
    sampler, tokenizer = _sampler(sft_data, bonus=50.0)
    record = generate_records(1, seed=5)[0]
    ids = tokenizer(
        plain_prompt(record.beautified_source_prompt, record.instruction), add_special_tokens=False
    ).input_ids  # type: ignore[operator]
    greedy, greedy_logp = sampler.run(ids, "greedy")
    assert greedy_logp == [0.0] * len(greedy)  # deterministic steps: μ(a) = 1
    # a hard negative leaves the greedy path exactly at the deviation step, never on the top-1 token there
    deviate = min(2, len(greedy) - 1)
    negative, negative_logp = sampler.run(ids, "negative", deviate=deviate)
    assert negative[:deviate] == greedy[:deviate] and negative[deviate] != greedy[deviate]
    assert negative_logp[deviate] < 0.0 and all(v == 0.0 for v in negative_logp[:deviate])
    # a positive only uses tokens of the target prompt when the bonus dominates
    target_ids = set(tokenizer(" " + record.beautified_target_prompt, add_special_tokens=False).input_ids)  # type: ignore[operator]
    positive, _ = sampler.run(ids, "positive", record.beautified_target_prompt)
    assert set(positive[:-1]) <= target_ids
    plain_a, _ = _sampler(sft_data)[0].run(ids, "plain")
    assert plain_a == _sampler(sft_data)[0].run(ids, "plain")[0]  # seeded


def test_gae_with_lambda_one_is_return_minus_value() -> None:
    rewards = torch.tensor([0.1, -0.2, 1.0])
    values = torch.tensor([0.5, 0.3, 0.2])
    advantages = _gae(rewards, values, gamma=1.0, lam=1.0)
    assert torch.allclose(advantages, torch.tensor([0.9, 0.8, 1.0]) - values)  # returns: suffix sums
    # λ = 0: one-step TD errors
    assert torch.allclose(_gae(rewards, values, 1.0, 0.0), torch.tensor([0.1 + 0.3 - 0.5, -0.2 + 0.2 - 0.3, 1.0 - 0.2]))


def test_leave_one_out_baseline_centres_each_group_on_its_siblings() -> None:
    rewards = [0.9, 0.5, 0.7, 0.3, 0.2, 0.2, 0.2, 0.6]
    shaped = _shaped_rewards(rewards, RlConfig(rollouts=8, group=4))
    assert shaped[0] == pytest.approx(0.9 - (0.5 + 0.7 + 0.3) / 3)
    assert shaped[4] == pytest.approx(0.2 - (0.2 + 0.2 + 0.6) / 3)
    # a record every episode draws equally well teaches nothing, however easy it is
    assert _shaped_rewards([0.8] * 4, RlConfig(rollouts=4, group=4)) == pytest.approx([0.0] * 4)
    assert _shaped_rewards(rewards, RlConfig(rollouts=8, group=1, baseline="none")) == rewards


def test_the_integrity_state_value_credits_prefixes_that_name_the_asked_scene(sft_data: str) -> None:
    tokenizer, _ = _load(sft_dir(sft_data))
    caption = "一个红色的大圆形在左上，蓝色背景"
    asked = parse_caption(caption)
    tokens = [*tokenizer(" " + caption, add_special_tokens=False).input_ids, tokenizer.eos_token_id]
    phi = _prefix_integrity(tokenizer, asked, tokens)
    assert len(phi) == len(tokens) and phi[0] == 0.0
    assert phi[-1] == pytest.approx(1.0) and max(phi[: len(phi) // 3]) < phi[-1]
    assert _prefix_integrity(tokenizer, None, tokens) == [0.0] * len(tokens)


def test_ppo_raises_a_learnable_reward(sft_data: str, tmp_path: Path) -> None:
    """With a reward the policy can reach (short rewrites), the rollouts' reward climbs; the KL to the SFT
    model is measured and positive; the model is saved and its summary written."""

    def shorter(items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        return [{COMBINED: 1.0 - min(len(i.prompt), 40) / 40, "integrity": 0.0} for i in items]

    config = RlConfig(steps=14, rollouts=12, lr=2e-3, kl=0.01, held_out=4, records=200, max_new_tokens=40)
    summary = train_rl(sft_dir(sft_data), tmp_path / "rl", shorter, config)
    assert summary["reward_last"] > summary["reward_first"] + 0.1, summary["history"]
    assert summary["kl_last"] > 0.0
    assert summary["held_out_after"]["reward"] > summary["held_out_before"]["reward"]
    assert {"reward_plain", "reward_positive", "reward_negative"} <= set().union(*summary["history"])
    assert json.loads((tmp_path / "rl" / "training.json").read_text())["steps"] == 14
    assert (tmp_path / "rl" / "config.json").is_file()


def test_sampling_reach_counts_right_greedy_rewrites_and_right_samples(
    sft_data: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Record 0: greedy right. Record 1: greedy wrong, every other sample right. Record 2: never right."""
    records = [
        r
        for r in generate_records(60, seed=3)
        if parse_caption(r.beautified_source_prompt) != parse_caption(r.beautified_target_prompt)
    ][:3]
    tokenizer, _ = _load(sft_dir(sft_data))
    plans = {0: ("right", ["wrong"]), 1: ("wrong", ["right", "wrong"]), 2: ("wrong", ["wrong"])}
    drawn: dict[int, int] = {}

    def run(self: _Sampler, prompt_ids: list[int], mode: str, target: str = "", deviate: int = -1) -> object:
        i = next(
            k
            for k, r in enumerate(records)
            if tokenizer(  # type: ignore[operator]
                plain_prompt(r.beautified_source_prompt, r.instruction), add_special_tokens=False
            ).input_ids
            == prompt_ids
        )
        greedy, cycle = plans[i]
        if mode == "greedy":
            pick = greedy
        else:
            assert mode == "plain"  # the policy itself, not a modified action space
            pick = cycle[drawn.get(i, 0) % len(cycle)]
            drawn[i] = drawn.get(i, 0) + 1
        text = records[i].beautified_target_prompt if pick == "right" else records[i].beautified_source_prompt
        return tokenizer(" " + text, add_special_tokens=False).input_ids, []  # type: ignore[operator]

    monkeypatch.setattr(_Sampler, "run", run)
    reach = sampling_reach(sft_dir(sft_data), records, samples=4)
    assert reach == {
        "records": 3,
        "samples": 4,
        "greedy_exact": round(1 / 3, 4),
        "greedy_wrong": 2,
        "exact_sample_share_on_wrong": 0.25,
        "wrong_with_an_exact_sample": 0.5,
    }
    assert drawn == {1: 4, 2: 4}  # no samples where the greedy rewrite is already right
    with pytest.raises(InvalidParameters):
        sampling_reach(sft_dir(sft_data), records, samples=0)


def test_rl_config_rejects_bad_settings() -> None:
    with pytest.raises(InvalidParameters):
        RlConfig(state_value="oracle")
    with pytest.raises(InvalidParameters):
        RlConfig(positive=0.8, negative=0.5)
    with pytest.raises(InvalidParameters):
        RlConfig(steps=0)
    with pytest.raises(InvalidParameters, match="divide"):
        RlConfig(rollouts=10, group=4)
    with pytest.raises(InvalidParameters, match="baseline"):
        RlConfig(group=1)  # leave-one-out needs siblings
    with pytest.raises(InvalidParameters, match="reward"):
        RlConfig(reward="clip")


def test_text_integrity_reads_the_rewrite_against_the_asked_scene() -> None:
    source = "一个带描边的红色的小圆形在左上，一个带描边的黄色的大正方形在中间"
    right = "一个带描边的蓝色的小圆形在左上，一个带描边的黄色的大正方形在中间"
    exact = text_integrity(source, "把圆形换成蓝色", right)
    assert exact is not None and exact.exact and exact.score == pytest.approx(1.0)
    ignored = text_integrity(source, "把圆形换成蓝色", source)  # the instruction not applied
    assert ignored is not None and not ignored.exact and 0.5 < ignored.score < 1.0
    swapped = "一个带描边的红色的小圆形在左上，一个带描边的蓝色的大正方形在中间"  # the square turned blue
    wrong_object = text_integrity(source, "把圆形换成蓝色", swapped)
    assert wrong_object is not None and not wrong_object.exact
    unreadable = text_integrity(source, "把圆形换成蓝色", "好看的画")
    assert unreadable is not None and unreadable.score == 0.0
    # an unstated background is the default one: right when the turn asks for gray, wrong when it asks for white
    gray = text_integrity(source + "，白色背景", "背景改成灰色", source)
    white = text_integrity(source, "背景改成白色", source)
    assert gray is not None and gray.exact
    assert white is not None and not white.exact
    items = [ScoreItem(right, "把圆形换成蓝色", source, 0), ScoreItem(source, "把圆形换成蓝色", source, 0)]
    rows = text_integrity_scores(items)
    assert rows[0][COMBINED] == rows[0]["integrity"] == pytest.approx(1.0)
    assert rows[1][COMBINED] == pytest.approx(ignored.score)


def test_train_rl_through_the_library_renders_scores_and_serves(sft_data: str) -> None:
    """Real renders of the shipped demo model, the turns' rewards, then a turn with ``sft_rl``."""
    with Atelier.open(data_dir=sft_data) as base:
        base.init_demo()
        seen: list[dict[str, float]] = []
        summary = train_served_rl(
            base.container,
            steps=2,
            rollouts=4,
            held_out=2,
            render_steps=2,
            records=50,
            progress=lambda s, n, i: seen.append(i),
        )
        assert len(seen) == 2 and all(0.0 <= i["reward"] <= 1.0 for i in seen)
        assert set(summary["held_out_after"]) == {"reward", "integrity", "exact"}
        assert summary["path"] == str(rl_dir(sft_data))
    with Atelier.open(data_dir=sft_data, prompt_rewriter="sft_rl") as atelier:
        assert atelier.container.prompt_rewriter().name == "sft_rl"
        session = atelier.prompts.start("一个红色的圆形在中间")
        turn = atelier.prompts.turn(session.id, "把圆形换成蓝色", n=2, k=2, seed=0, steps=2)
        assert turn.candidates and all("integrity" in c.scores for c in turn.candidates if c.image_id)


def test_the_text_reward_trains_without_rendering(
    sft_data: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``reward="text"`` scores rollouts and the held-out check by the rewrites' text: nothing is rendered."""
    from app.usecases.score_prompts import ScorePrompts

    def no_render(*args: object, **kwargs: object) -> None:
        raise AssertionError("rendered")

    monkeypatch.setattr(ScorePrompts, "__call__", no_render)
    with Atelier.open(data_dir=sft_data, start_worker=False) as base:
        summary = train_served_rl(
            base.container,
            out_dir=str(tmp_path / "rl-text"),
            reward="text",
            steps=2,
            rollouts=4,
            held_out=6,
            records=50,
        )
    assert summary["config"]["reward"] == "text"
    saved = json.loads((tmp_path / "rl-text" / "training.json").read_text())
    assert saved["config"]["reward"] == "text"
    for check in (summary["held_out_before"], summary["held_out_after"]):
        assert 0.0 <= check["exact"] <= 1.0 and check["reward"] == check["integrity"]
    assert all(0.0 <= h["reward"] <= 1.0 for h in summary["history"])


def test_untrained_rewriters_name_the_command(tmp_path: Path) -> None:
    with Atelier.open(data_dir=str(tmp_path), profile="test", prompt_rewriter="sft_rl", start_worker=False) as atelier:
        session = atelier.prompts.start("一个红色的圆形在中间")
        with pytest.raises(ModelUnavailable, match="atelier prompts train-rl"):
            atelier.prompts.turn(session.id, "把圆形换成蓝色", steps=2)
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "prompts", "train-rl", "--steps", "1"])
    assert result.exit_code != 0
    assert result.stderr.strip().splitlines() == [
        "error: The SFT rewriter is not trained: run `atelier prompts train-sft` first."
    ]


def test_train_rl_cli_reports_json(sft_data: str) -> None:
    args = ["--data-dir", sft_data, "prompts", "train-rl", "--steps", "1", "--held-out", "1", "--render-steps", "2"]
    result = CliRunner().invoke(cli, [*args, "--no-adm", "--state-value", "plain", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["config"]["adm"] is False and report["config"]["state_value"] == "plain"
    assert report["config"]["reward"] == "render"
    text = CliRunner().invoke(cli, [*args, "--reward", "text", "--json"])
    assert text.exit_code == 0, text.output
    assert json.loads(text.stdout)["config"]["reward"] == "text"
    bad = CliRunner().invoke(cli, [*args, "--reward", "clip"])
    assert bad.exit_code != 0 and "clip" in bad.output
    assert report["steps"] == 1 and len(report["history"]) == 1
