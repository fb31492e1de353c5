"""RL of the demo world's rewriter (``atelier prompts train-rl``): PPO on the SFT rewriter with the turn's
combined reward, plus DiffChat's two techniques, action-space dynamic modification (ADM) and a
content-integrity-based state value. DiffChat publishes neither formulas nor hyper-parameters; each choice
below is ours and is marked as such. It is one algorithm, so it is one module: the rollouts, the PPO update and
the held-out check share the policy, its sampler and ``RlConfig``.

**Environment.** A state is the rewriter input (``plain_prompt(source, instruction)``, the source plain or
beautified at random, as in SFT) plus the tokens written so far; an action is the next token; an episode ends
at the end token, a line break or 64 new tokens. The terminal reward is the combined reward that ranks a
turn's candidates (``RewardWeights``: integrity 0.6, aesthetic 0.2, preference 0.2 when fitted) of the image
the demo model draws from the rewrite with the record's seed, so RL optimises what serving ranks by, on real
renders (as Promptist does), not on text proxies. Each token also pays the KL penalty
``-β (log π_old(a) − log π_ref(a))`` against the frozen SFT model (β = 0.05, BeautifulPrompt's initial KL).

**PPO.** Policy = a copy of the SFT model with a linear value head on the last hidden state (zero init);
per iteration ``rollouts`` episodes, GAE (γ = 1, λ = 0.95), advantages whitened over the batch, ``epochs``
passes of clipped surrogate (ε = 0.2) and value MSE in minibatches, AdamW, gradient norm 1.

**Baseline** (ours). Rollouts come in groups of ``group`` (4) episodes on one record, source and seed, and the
terminal reward PPO sees is the episode's reward minus the mean reward of the other episodes of its group
(leave-one-out, as in RLOO). One render per record says mostly how easy the record and its seed are, which
the value head cannot know from the text; the leave-one-out difference says how much better this rewrite drew
than its siblings, and it does not depend on the episode's own actions, so the gradient stays unbiased.
``baseline="none"`` (with ``group=1``: one episode per record) is the first version, kept as the ablation.

**ADM** (off-policy sampling with a modified action space; our reading of "more relevant positive samples and
harder negative samples"). Each episode draws a behaviour policy μ:

* *positive* (``positive`` share): the logits get ``+bonus`` on the tokens of the record's beautified target
  prompt, so samples stay close to a correct rewrite while still exploring word order and style words;
* *hard negative* (``negative`` share): the greedy rewrite with one step, uniform over its length, forced off
  the top-1 token (sampled from the rest): a near miss that differs from the likely answer by one token;
* *plain*: the policy itself at temperature 1.

The surrogate of each token is weighted by the truncated importance ratio ``ρ_t = min(1, π_old(a_t)/μ(a_t))``
(so off-policy tokens never count more than on-policy ones; μ(a) = 1 on the deterministic greedy steps).

**Content-integrity state value** (our reading of "content-integrity-aware value estimation").
``V(s_t) = V_θ(s_t) + c·Φ(s_t)``, where ``Φ(s_t)`` is the integrity of the prefix written so far: the scene
the turn asks for (``expected_scene``) against ``parse_caption`` of the decoded prefix (0 when it does not
read as a scene). GAE uses ``V``; ``V_θ`` is fitted to ``returns − c·Φ``. A prefix that already names what the
instruction asks for starts with a higher value, so credit reaches the tokens that keep the content, not only
the last one. ``state_value="plain"`` turns it off (``V = V_θ``), ``adm=False`` samples every episode on-policy:
the ablations that ``benchmarks.prompt_sessions --rl-ablations`` measures.

**Render-free reward** (``reward="text"``, a diagnostic). The scorer is the integrity of the rewrite's own
text against the asked scene (``text_integrity``) instead of a render: the same content check without the
image model's noise, so a run says whether PPO can improve the rewriter when the reward is exact (the runs
are in docs/benchmarks.md, "The prompt-session runs").

**Held-out check.** Before and after training, the greedy rewrites of held-out records (scenes of the held-out
split) are rendered and scored: mean combined reward, integrity and the share read back as exactly the
scene asked for (``exact``), written to ``training.json`` beside the model (``<data dir>/models/rewriter-rl``).
The value head is training state only and is not saved.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from app.adapters.rewards.integrity import expected_scene
from app.adapters.rewriting.causal_lm import plain_prompt
from app.demo_world.instructions import InstructPERecord
from app.demo_world.integrity import integrity
from app.demo_world.parsing import parse_caption
from app.demo_world.scenes import Scene
from app.domain.errors import InvalidParameters, ModelUnavailable
from app.domain.prompt_sessions import COMBINED, ScoreItem
from app.lab.prompts.sft import generate_records, states_target

Progress = Callable[[int, int, dict[str, float]], None]
Scorer = Callable[[Sequence[ScoreItem]], list[dict[str, float]]]
MODES = ("plain", "positive", "negative")


@dataclass
class RlConfig:
    steps: int = 60
    rollouts: int = 16
    epochs: int = 4
    minibatch: int = 8
    lr: float = 3e-5
    kl: float = 0.05
    clip: float = 0.2
    gamma: float = 1.0
    lam: float = 0.95
    value_coef: float = 0.5
    max_new_tokens: int = 64
    adm: bool = True
    positive: float = 0.25
    negative: float = 0.25
    bonus: float = 2.0
    state_value: str = "integrity"
    integrity_coef: float = 0.5
    group: int = 4
    baseline: str = "loo"
    records: int = 4000
    held_out: int = 64
    render_steps: int = 20
    reward: str = "render"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.rollouts < 1 or self.epochs < 1 or self.minibatch < 1:
            raise InvalidParameters("steps, rollouts, epochs and minibatch must be at least 1.", field="steps")
        if self.state_value not in ("integrity", "plain"):
            raise InvalidParameters("state_value must be 'integrity' or 'plain'.", field="state_value")
        if not (self.positive >= 0 and self.negative >= 0 and self.positive + self.negative <= 1):
            raise InvalidParameters("positive and negative shares must be in [0, 1] and sum to at most 1.")
        if self.group < 1 or self.rollouts % self.group:
            raise InvalidParameters("group must be at least 1 and divide rollouts.", field="group")
        if self.baseline not in ("loo", "none") or (self.baseline == "loo" and self.group < 2):
            raise InvalidParameters("baseline must be 'loo' (with group >= 2) or 'none'.", field="baseline")
        if self.reward not in ("render", "text"):
            raise InvalidParameters("reward must be 'render' or 'text'.", field="reward")
        if self.lr <= 0 or self.kl < 0 or not 0 < self.clip < 1:
            raise InvalidParameters("lr must be positive, kl non-negative and clip in (0, 1).", field="lr")


@dataclass
class Episode:
    record: InstructPERecord
    source: str
    seed: int
    mode: str
    prompt_ids: list[int]
    tokens: list[int]
    behaviour_logp: list[float]
    text: str = ""
    reward: float = 0.0


class _Policy(torch.nn.Module):
    """The causal LM and its value head (one scalar per position, from the last hidden state)."""

    def __init__(self, lm: Any) -> None:
        super().__init__()
        self.lm = lm
        self.value = torch.nn.Linear(lm.config.hidden_size, 1)
        torch.nn.init.zeros_(self.value.weight)
        torch.nn.init.zeros_(self.value.bias)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.lm(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        return torch.log_softmax(out.logits.float(), -1), self.value(out.hidden_states[-1]).squeeze(-1)


def _load(folder: Path) -> tuple[Any, Any]:
    from app.adapters.transformers.llm import load_causal_lm

    if not (folder / "config.json").is_file():
        raise ModelUnavailable("The SFT rewriter is not trained: run `atelier prompts train-sft` first.")
    return load_causal_lm(str(folder), torch.device("cpu"))


def _text(tokenizer: Any, tokens: Sequence[int]) -> str:
    return str(tokenizer.decode(list(tokens), skip_special_tokens=True)).strip().split("\n", 1)[0].strip()


class _Sampler:
    """Episodes under a behaviour policy μ (plain, positive or hard negative), one token at a time with the KV cache."""

    def __init__(self, lm: Any, tokenizer: Any, config: RlConfig, generator: torch.Generator) -> None:
        self.lm, self.tokenizer, self.config, self.generator = lm, tokenizer, config, generator
        vocab = lm.config.vocab_size
        self.stop = torch.zeros(vocab, dtype=torch.bool)
        for i in range(min(vocab, len(tokenizer))):
            if "\n" in tokenizer.decode([i]):
                self.stop[i] = True
        self.stop[tokenizer.eos_token_id] = True

    @torch.no_grad()
    def run(
        self, prompt_ids: list[int], mode: str, target: str = "", deviate: int = -1
    ) -> tuple[list[int], list[float]]:
        bonus = torch.zeros(self.lm.config.vocab_size)
        if mode == "positive":
            ids = self.tokenizer(" " + target, add_special_tokens=False).input_ids
            bonus[torch.tensor([*ids, self.tokenizer.eos_token_id])] = self.config.bonus
        out = self.lm(input_ids=torch.tensor([prompt_ids]), use_cache=True)
        tokens: list[int] = []
        behaviour: list[float] = []
        for t in range(self.config.max_new_tokens):
            logits = out.logits[0, -1].float()
            if mode == "positive":
                mu = torch.log_softmax(logits + bonus, -1)
                action = int(torch.multinomial(mu.exp(), 1, generator=self.generator))
            elif mode in ("negative", "greedy") and t != deviate:
                action, mu = int(logits.argmax()), torch.zeros_like(logits)  # deterministic step: μ(a) = 1
            elif mode == "negative":
                masked = logits.clone()
                masked[logits.argmax()] = -math.inf
                mu = torch.log_softmax(masked, -1)
                action = int(torch.multinomial(mu.exp(), 1, generator=self.generator))
            else:
                mu = torch.log_softmax(logits, -1)
                action = int(torch.multinomial(mu.exp(), 1, generator=self.generator))
            tokens.append(action)
            behaviour.append(float(mu[action]))
            if self.stop[action]:
                break
            out = self.lm(input_ids=torch.tensor([[action]]), past_key_values=out.past_key_values, use_cache=True)
        return tokens, behaviour


def _prefix_integrity(tokenizer: Any, asked: Scene | None, tokens: Sequence[int]) -> list[float]:
    """Φ(s_t) for t = 0..T-1: integrity of the decoded prefix of t tokens against the asked scene (0 if unreadable)."""
    out = []
    for t in range(len(tokens)):
        value = 0.0
        if asked is not None and t > 0:
            with contextlib.suppress(ValueError, IndexError):
                value = float(integrity(asked, parse_caption(_text(tokenizer, tokens[:t]))).score)
        out.append(value)
    return out


def _batch(episodes: Sequence[Episode], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(e.prompt_ids) + len(e.tokens) for e in episodes)
    ids = torch.full((len(episodes), width), pad)
    mask = torch.zeros((len(episodes), width), dtype=torch.long)
    for row, e in enumerate(episodes):
        seq = e.prompt_ids + e.tokens
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return ids, mask


def _gather(
    logp: torch.Tensor, values: torch.Tensor, episodes: Sequence[Episode]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per episode: log π of its tokens and V_θ of the states before them (positions P-1 .. P+T-2)."""
    out = []
    for row, e in enumerate(episodes):
        start, n = len(e.prompt_ids) - 1, len(e.tokens)
        idx = torch.tensor(e.tokens)
        out.append((logp[row, start : start + n].gather(-1, idx[:, None]).squeeze(-1), values[row, start : start + n]))
    return out


def _shaped_rewards(rewards: Sequence[float], config: RlConfig) -> list[float]:
    """The terminal rewards PPO sees: with ``baseline="loo"`` each reward minus the mean of the other episodes
    of its group (same record, source and seed), so the advantage says how much better this rewrite drew than
    its siblings, not how easy the record is; the baseline does not depend on the episode's own actions."""
    if config.baseline == "none":
        return list(rewards)
    out = []
    for start in range(0, len(rewards), config.group):
        group = rewards[start : start + config.group]
        total = sum(group)
        out += [r - (total - r) / (len(group) - 1) for r in group]
    return out


def _gae(rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    advantages = torch.zeros_like(rewards)
    running = 0.0
    for t in reversed(range(len(rewards))):
        following = values[t + 1] if t + 1 < len(rewards) else 0.0
        delta = rewards[t] + gamma * following - values[t]
        running = float(delta) + gamma * lam * running
        advantages[t] = running
    return advantages


def evaluate(
    lm: Any, tokenizer: Any, records: Sequence[InstructPERecord], scorer: Scorer, config: RlConfig, seed: int
) -> dict[str, float]:
    """Greedy rewrites of ``records`` (beautified sources), rendered and scored."""
    sampler = _Sampler(lm, tokenizer, config, torch.Generator().manual_seed(seed))
    items = []
    rng = random.Random(seed)
    for r in records:
        ids = tokenizer(plain_prompt(r.beautified_source_prompt, r.instruction), add_special_tokens=False).input_ids
        tokens, _ = sampler.run(ids, "greedy")
        items.append(
            ScoreItem(_text(tokenizer, tokens), r.instruction, r.beautified_source_prompt, rng.randrange(2**31))
        )
    scores = scorer(items)
    n = max(1, len(scores))
    return {
        "reward": round(sum(s[COMBINED] for s in scores) / n, 4),
        "integrity": round(sum(s.get("integrity", 0.0) for s in scores) / n, 4),
        "exact": round(sum(s.get("integrity", 0.0) >= 0.999 for s in scores) / n, 4),
    }


def sampling_reach(
    folder: str | Path, records: Sequence[InstructPERecord], samples: int, seed: int = 0
) -> dict[str, float]:
    """What PPO's rollouts can find: on ``records`` (beautified sources, as the held-out check), the share
    whose greedy rewrite states the target scene exactly, and on the records it gets wrong, how often
    ``samples`` rollouts of the policy itself (temperature 1, ADM off) state it exactly: the mean share of
    exact samples and the share of those records with at least one. A policy-gradient update can only
    reinforce a right rewrite it has sampled; a record whose right rewrite is never sampled gets no signal."""
    if samples < 1:
        raise InvalidParameters("samples must be at least 1.", field="samples")
    tokenizer, lm = _load(Path(folder))
    sampler = _Sampler(lm, tokenizer, RlConfig(), torch.Generator().manual_seed(seed))
    right, shares = 0, []
    for r in records:
        ids = tokenizer(plain_prompt(r.beautified_source_prompt, r.instruction), add_special_tokens=False).input_ids
        if states_target(_text(tokenizer, sampler.run(ids, "greedy")[0]), r):
            right += 1
            continue
        drawn = [states_target(_text(tokenizer, sampler.run(ids, "plain")[0]), r) for _ in range(samples)]
        shares.append(sum(drawn) / samples)
    n = max(1, len(records))
    return {
        "records": len(records),
        "samples": samples,
        "greedy_exact": round(right / n, 4),
        "greedy_wrong": len(shares),
        "exact_sample_share_on_wrong": round(sum(shares) / max(1, len(shares)), 4),
        "wrong_with_an_exact_sample": round(sum(x > 0 for x in shares) / max(1, len(shares)), 4),
    }


def train_rl(
    sft_folder: str | Path,
    out_dir: str | Path,
    scorer: Scorer,
    config: RlConfig,
    records: Sequence[InstructPERecord] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    tokenizer, lm = _load(Path(sft_folder))
    _, reference = _load(Path(sft_folder))
    train_records = list(records) if records is not None else generate_records(config.records, config.seed + 7)
    if not train_records:
        raise InvalidParameters("No training records.", field="data")
    held = generate_records(config.held_out, config.seed + 2, split="heldout")
    started = time.perf_counter()
    before = evaluate(lm, tokenizer, held, scorer, config, config.seed) if held else {}
    lm.requires_grad_(True)
    policy = _Policy(lm)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.lr, weight_decay=0.0)
    sampler = _Sampler(lm, tokenizer, config, generator)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    c = config.integrity_coef if config.state_value == "integrity" else 0.0
    history: list[dict[str, float]] = []
    for step in range(config.steps):
        # 1. rollouts under the behaviour policies, then their renders and rewards
        policy.eval()
        episodes = []
        for k in range(config.rollouts):
            if k % config.group == 0:  # a new record, source and seed for the next `group` episodes
                r = train_records[rng.randrange(len(train_records))]
                source = r.beautified_source_prompt if rng.random() < 0.5 else r.source_prompt
                seed = rng.randrange(2**31)
            u = rng.random()
            mode = "plain"
            if config.adm:
                mode = (
                    "positive"
                    if u < config.positive
                    else "negative"
                    if u < config.positive + config.negative
                    else "plain"
                )
            ids = tokenizer(plain_prompt(source, r.instruction), add_special_tokens=False).input_ids
            deviate = -1
            if mode == "negative":
                greedy, _ = sampler.run(ids, "greedy")
                deviate = rng.randrange(len(greedy))
            tokens, behaviour = sampler.run(ids, mode, r.beautified_target_prompt, deviate)
            episodes.append(Episode(r, source, seed, mode, ids, tokens, behaviour))
        for e in episodes:
            e.text = _text(tokenizer, e.tokens)
        scores = scorer([ScoreItem(e.text, e.record.instruction, e.source, e.seed) for e in episodes])
        for e, s in zip(episodes, scores, strict=True):
            e.reward = s[COMBINED]
        shaped = _shaped_rewards([e.reward for e in episodes], config)
        # 2. old log-probs and values, reference log-probs, KL-penalised rewards, GAE
        ids, mask = _batch(episodes, pad)
        with torch.no_grad():
            old_logp_all, old_values_all = policy(ids, mask)
            old = _gather(old_logp_all, old_values_all, episodes)
            ref_logp = torch.log_softmax(reference(input_ids=ids, attention_mask=mask).logits.float(), -1)
            ref = [lp for lp, _ in _gather(ref_logp, torch.zeros(ref_logp.shape[:2]), episodes)]
        rows: list[dict[str, torch.Tensor]] = []
        kls = []
        for e, shaped_reward, (old_logp, old_value), ref_lp in zip(episodes, shaped, old, ref, strict=True):
            phi = torch.tensor(
                _prefix_integrity(tokenizer, expected_scene(e.source, e.record.instruction, e.text), e.tokens)
            )
            kl = old_logp - ref_lp
            kls.append(float(kl.sum()))
            rewards = -config.kl * kl
            rewards[-1] += shaped_reward
            values = old_value + c * phi
            advantages = _gae(rewards, values, config.gamma, config.lam)
            returns = advantages + values
            rho = torch.clamp(torch.exp(old_logp - torch.tensor(e.behaviour_logp)), max=1.0)
            rows.append({"old": old_logp, "adv": advantages, "target": returns - c * phi, "rho": rho})
        flat = torch.cat([r["adv"] for r in rows])
        mean, std = flat.mean(), flat.std() if flat.numel() > 1 else torch.tensor(1.0)
        for row in rows:
            row["adv"] = (row["adv"] - mean) / (std + 1e-8)
        # 3. PPO epochs
        policy.train()
        losses = []
        order = list(range(len(episodes)))
        for _ in range(config.epochs):
            rng.shuffle(order)
            for start in range(0, len(order), config.minibatch):
                chosen = order[start : start + config.minibatch]
                part = [episodes[i] for i in chosen]
                part_ids, part_mask = _batch(part, pad)
                new_logp, new_values = policy(part_ids, part_mask)
                new = _gather(new_logp, new_values, part)
                policy_terms, value_terms = [], []
                for i, (logp, value) in zip(chosen, new, strict=True):
                    row = rows[i]
                    ratio = torch.exp(logp - row["old"])
                    surrogate = torch.min(
                        ratio * row["adv"], torch.clamp(ratio, 1 - config.clip, 1 + config.clip) * row["adv"]
                    )
                    policy_terms.append(-(row["rho"] * surrogate))
                    value_terms.append((value - row["target"]) ** 2)
                loss: Any = torch.cat(policy_terms).mean() + config.value_coef * torch.cat(value_terms).mean()
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
                optimizer.step()
                losses.append(float(loss.detach()))
        entry = {
            "reward": sum(e.reward for e in episodes) / len(episodes),
            "kl": sum(kls) / len(kls),
            "loss": sum(losses) / len(losses),
        }
        for mode in MODES:
            picked = [e.reward for e in episodes if e.mode == mode]
            if picked:
                entry[f"reward_{mode}"] = sum(picked) / len(picked)
        history.append(entry)
        if progress is not None:
            progress(step + 1, config.steps, {"reward": entry["reward"], "kl": entry["kl"]})
    lm.eval().requires_grad_(False)
    after = evaluate(lm, tokenizer, held, scorer, config, config.seed) if held else {}
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    lm.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    window = max(1, min(5, len(history) // 2 or 1))
    summary: dict[str, Any] = {
        "steps": config.steps,
        "train_minutes": round((time.perf_counter() - started) / 60, 2),
        "reward_first": round(sum(h["reward"] for h in history[:window]) / window, 4),
        "reward_last": round(sum(h["reward"] for h in history[-window:]) / window, 4),
        "kl_last": round(sum(h["kl"] for h in history[-window:]) / window, 4),
        "held_out_before": before,
        "held_out_after": after,
        "config": asdict(config),
        "history": [{k: round(v, 4) for k, v in h.items()} for h in history],
    }
    (folder / "training.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    return summary
