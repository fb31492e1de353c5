"""Meta-training of the DAFNet (and MEND) auxiliary networks, as the authors train them.

Each step applies a batch of N edits at once (the causal mask of the inter-editing attention stands in
for their order, exactly as applying them one by one would), then computes on the edited model:

- reliability: the edits' target NLL (weight 0.1),
- generality: the target NLL after a rephrasing of each edit, robust (prefixed) ones included (0.1),
- locality: token KL(pre ‖ post) at the answer positions of the edits' locality probes and over plain
  text (0.2),

and updates the networks (Adam) and the per-module edit learning rates (Adam, their own rate), with
the gradient norm clipped at 100. **Sequence-length curriculum**: N is drawn uniformly from 1..n; n
starts at 1 and grows by max(25 %, 10) (up to ``max_sequence``) whenever the EMA of the loss has not
reached a new minimum for ``patience / max(1, log10 n)`` steps.

**How N is drawn** (``sequence_sampling``). The authors draw N uniformly from 1..n ("uniform", the
default). "log-uniform" draws N = ⌊exp(U(0, ln(n+1)))⌋, so P(N = k) = ln((k+1)/k) / ln(n+1): N = 1 on
about 15 % of the steps at n = 100 instead of 1 %, and every scale of sequence length about equally
often. It was tried against the overshoot of a lone edit (the first edit of a sequence is the only one
with an empty bank, so its gate is 1 and its update is applied whole). It does not cure it and trades
reliability at T=100 for locality (docs/benchmarks.md, "The editing runs"), so the default stays the
authors'.

**Only the edited blocks run.** Edits change only the last ``blocks`` decoder blocks, so the hidden
states entering the first edited block do not depend on the edit: they are computed once per training
sequence (the forward stops there) and every step runs only the edited blocks, the final norm and the
output head at the scored positions. Exact, not an approximation (a test compares it with the full
model); on SmolLM2-135M (30 blocks) with the default 3 it skips nine tenths of the model. The editing
signal (taken on the original weights) is likewise computed once per training edit.

Scaled down for a CPU (every change is stated in docs/model-edits.md): widths (``NetworkConfig``), steps, and the
network learning rate (the authors' 1e-6 is for 7B models and many GPU-days; 1e-4 here).
Every random draw derives from the seed and the step number, so a resumed run continues exactly, and a
run resumed with more ``steps`` (or another ``max_sequence``) is the longer run it would have been.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from app.adapters.editing.dafnet import HyperNetworks, fold, save_networks
from app.adapters.editing.encoding import Encoded, encode, pad_id
from app.adapters.editing.hooks import DeltaHooks, last_mlp_modules
from app.adapters.editing.network import NetworkConfig
from app.adapters.editing.signal import editing_signal, target_nll
from app.adapters.editing.tail import TailRunner
from app.domain.edits import EditSpec
from app.domain.errors import InvalidParameters

Progress = Callable[[int, int, dict[str, float]], None]

# Settings a resumed run may change: more steps, a higher (or lower) curriculum cap, another checkpoint
# interval. Everything else shapes what the saved state means, so it must match.
EXTENDABLE = frozenset({"steps", "max_sequence", "checkpoint_every"})
SEQUENCE_SAMPLING = ("uniform", "log-uniform")


def draw_sequence_length(rng: random.Random, cap: int, sampling: str) -> int:
    """N in 1..cap: uniform, or log-uniform (P(N = k) = ln((k+1)/k) / ln(cap+1))."""
    if sampling == "log-uniform":
        return min(cap, int(math.exp(rng.uniform(0.0, math.log(cap + 1)))))
    return rng.randint(1, cap)


@dataclass
class EditTrainConfig:
    editor: str = "dafnet"  # "mend": the same network without inter-editing attention and gate
    blocks: int = 3
    steps: int = 1500
    lr: float = 1e-4
    init_edit_lr: float = 1e-4
    edit_lr_lr: float = 1e-4
    rel_weight: float = 0.1
    gen_weight: float = 0.1
    loc_weight: float = 0.2
    max_sequence: int = 100
    patience: int = 100
    grow: float = 0.25
    grow_min: int = 10
    ema: float = 0.05
    loss_samples: int = 32
    plain_per_step: int = 4
    plain_tokens: int = 48
    grad_clip: float = 100.0
    seed: int = 0
    checkpoint_every: int = 100
    extra_cities: int = 0  # extra country_of_city training edits (``dafset.build_edits``)
    start_sequence: int = 1  # the curriculum's first n (a warm start from trained networks may begin higher)
    sequence_sampling: str = "uniform"  # or "log-uniform": how N is drawn from 1..n (module docstring)
    network: NetworkConfig = field(default_factory=NetworkConfig)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["network"] = self.network.to_dict()
        return data


@dataclass
class _Example:
    edit: Encoded
    rephrases: list[Encoded]
    locality: list[Encoded]


class EditTrainer:
    """Meta-trains the networks of ``config.editor`` for one language model (a ``TransformersLanguageModel``)."""

    def __init__(self, lm: Any, train: Sequence[EditSpec], plain: Sequence[str], config: EditTrainConfig) -> None:
        if config.editor not in ("dafnet", "mend"):
            raise InvalidParameters("Only dafnet and mend are meta-trained.", field="editor")
        if not train:
            raise InvalidParameters("The training set has no edits.", field="dataset")
        if config.sequence_sampling not in SEQUENCE_SAMPLING:
            raise InvalidParameters(
                f"sequence_sampling must be one of {', '.join(SEQUENCE_SAMPLING)}.", field="sequence_sampling"
            )
        if config.editor == "mend":
            config.network = NetworkConfig(**{**config.network.to_dict(), "inter_edit": False})
        self.lm, self.config = lm, config
        self.names = last_mlp_modules(lm.model, config.blocks)
        self.hooks = DeltaHooks(lm.model, self.names)
        first = int(self.names[0].split(".")[2])
        self.pad = pad_id(lm.tokenizer)
        self.tail = TailRunner(lm.model, first, self.pad)
        torch.manual_seed(config.seed)
        self.nets = HyperNetworks(self.hooks.modules, config.network, config.init_edit_lr)
        self.examples = [self._example(spec) for spec in train]
        self.plain = [self._plain(text) for text in plain if text.strip()]
        self._cache: dict[int, torch.Tensor] = {}
        self._signals: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self.step = 0
        self.curriculum = max(1, min(config.start_sequence, config.max_sequence))
        self.ema: float | None = None
        self.best = (math.inf, 0)
        self.net_opt = torch.optim.Adam(list(self.nets.networks.parameters()), lr=config.lr)
        self.lr_opt = torch.optim.Adam([self.nets.lrs], lr=config.edit_lr_lr)
        self.seconds = 0.0
        self.history: list[dict[str, float]] = []

    # -- data --------------------------------------------------------------------------------------

    def _example(self, spec: EditSpec) -> _Example:
        return _Example(
            encode(self.lm, spec.prompt, spec.target),
            [encode(self.lm, r, spec.target) for r in spec.rephrases],
            [encode(self.lm, p.prompt, p.answer) for p in spec.locality],
        )

    def _plain(self, text: str) -> Encoded:
        ids = self.lm.tokenizer(text, add_special_tokens=False).input_ids[: self.config.plain_tokens]
        return Encoded(ids, 1)

    def _hidden(self, batch: Sequence[Encoded]) -> list[torch.Tensor]:
        """Cached prefix hidden states (computed on first use, by object identity of the encoding)."""
        missing = [e for e in batch if id(e) not in self._cache]
        if missing:
            for e, h in zip(missing, self.tail.prefix(missing), strict=True):
                self._cache[id(e)] = h
        return [self._cache[id(e)] for e in batch]

    def _signal(self, batch: Sequence[Encoded]) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
        """Cached editing signal per edit. It is taken on the original weights (deltas off, base frozen) and
        each edit's rows of the summed NLL's gradient depend on that edit alone, so it is constant over the
        whole training: computed on an edit's first draw, exact afterwards."""
        missing = [e for e in batch if id(e) not in self._signals]
        if missing:
            with self.hooks.disabled(), torch.no_grad():
                hidden = self._hidden(missing)
                fresh = editing_signal(
                    self.lm.model, self.hooks.modules, missing, self.pad, lambda b: self.tail.target_logits(hidden, b)
                )
            for e, per_module in zip(missing, fresh, strict=True):
                self._signals[id(e)] = per_module
        return [self._signals[id(e)] for e in batch]

    # -- one step --------------------------------------------------------------------------------

    def run(self, progress: Progress | None = None, should_stop: Callable[[], bool] | None = None) -> None:
        while self.step < self.config.steps:
            if should_stop is not None and should_stop():
                return
            started = time.perf_counter()
            info = self.train_step()
            self.seconds += time.perf_counter() - started
            if progress is not None:
                progress(self.step, self.config.steps, info)

    def train_step(self) -> dict[str, float]:
        c = self.config
        rng = random.Random(c.seed * 1_000_003 + self.step)
        n = draw_sequence_length(rng, min(self.curriculum, len(self.examples)), c.sequence_sampling)
        chosen = rng.sample(self.examples, n)
        edits = [ex.edit for ex in chosen]
        self.nets.train()
        with self.lm.lock:
            signal = self._signal(edits)
            deltas = []
            for i in range(len(self.hooks.modules)):
                net = self.nets.network(i)
                x = torch.cat([torch.cat(signal[e][i], -1) for e in range(n)], 0)
                lengths = [signal[e][i][0].shape[0] for e in range(n)]
                x1, x2, _, decay = net(x, lengths, net.empty_banks(x.device), self.nets.modes[i])
                deltas.append(fold(None, decay, x1, self.nets.lrs[i] * x2))
            rel_batch = self._cap(edits, rng)
            gen_batch = self._cap([rng.choice(ex.rephrases) for ex in chosen if ex.rephrases], rng)
            loc_batch = self._cap([p for ex in chosen for p in ex.locality], rng)
            loc_batch += [rng.choice(self.plain) for _ in range(c.plain_per_step)] if self.plain else []
            with self.hooks.disabled(), torch.no_grad():
                pre = self.tail.target_logits(self._hidden(loc_batch), loc_batch) if loc_batch else None
            self.hooks.deltas = list(deltas)
            try:
                rel = target_nll(self.tail.target_logits(self._hidden(rel_batch), rel_batch), rel_batch) / len(
                    rel_batch
                )
                loss = c.rel_weight * rel
                gen = torch.zeros(())
                if gen_batch:
                    gen = target_nll(self.tail.target_logits(self._hidden(gen_batch), gen_batch), gen_batch) / len(
                        gen_batch
                    )
                    loss = loss + c.gen_weight * gen
                loc = torch.zeros(())
                if loc_batch and pre is not None:
                    post = self.tail.target_logits(self._hidden(loc_batch), loc_batch)
                    loc = F.kl_div(
                        F.log_softmax(post, -1), F.log_softmax(pre, -1), log_target=True, reduction="batchmean"
                    )
                    loss = loss + c.loc_weight * loc
                self.net_opt.zero_grad()
                self.lr_opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                torch.nn.utils.clip_grad_norm_(list(self.nets.parameters()), c.grad_clip)
                self.net_opt.step()
                self.lr_opt.step()
            finally:
                self.hooks.clear()
        value = float(loss.detach())
        self._advance(value)
        info = {
            "loss": value,
            "rel": float(rel.detach()),
            "gen": float(gen.detach()),
            "loc": float(loc.detach()),
            "n": float(n),
            "curriculum": float(self.curriculum),
        }
        if self.step % 10 == 0:
            self.history.append({"step": float(self.step), **info})
        return info

    def _cap(self, batch: list[Encoded], rng: random.Random) -> list[Encoded]:
        return batch if len(batch) <= self.config.loss_samples else rng.sample(batch, self.config.loss_samples)

    def _advance(self, loss: float) -> None:
        c = self.config
        self.ema = loss if self.ema is None else self.ema + (loss - self.ema) * c.ema
        self.step += 1
        if self.ema < self.best[0]:
            self.best = (self.ema, self.step)
        elif self.step - self.best[1] > c.patience / max(1.0, math.log10(self.curriculum)) and (
            self.curriculum < c.max_sequence
        ):
            self.curriculum = min(c.max_sequence, self.curriculum + max(int(self.curriculum * c.grow), c.grow_min))
            self.best = (math.inf, self.step)

    # -- checkpoints --------------------------------------------------------------------------------

    def save_checkpoint(self, path: str | Path) -> None:
        state = {
            "nets": self.nets.state_dict(),
            "net_opt": self.net_opt.state_dict(),
            "lr_opt": self.lr_opt.state_dict(),
            "step": self.step,
            "curriculum": self.curriculum,
            "ema": self.ema,
            "best": self.best,
            "seconds": self.seconds,
            "history": self.history,
            "config": self.config.to_dict(),
        }
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(target)

    def load_checkpoint(self, path: str | Path) -> bool:
        target = Path(path)
        if not target.is_file():
            return False
        state = torch.load(target, map_location="cpu", weights_only=False)
        # a setting added since the checkpoint was written had its default then
        defaults = EditTrainConfig(editor=self.config.editor, network=self.config.network).to_dict()
        stored, current = {**defaults, **dict(state["config"])}, self.config.to_dict()
        changed = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
        fixed = [k for k in changed if k not in EXTENDABLE]
        if fixed:
            raise InvalidParameters(
                f"The checkpoint {target} was written with other settings ({', '.join(fixed)}); use --restart."
            )
        if self.config.steps < state["step"]:
            raise InvalidParameters(
                f"The checkpoint {target} is at step {state['step']}, past the {self.config.steps} steps asked for; "
                "ask for more steps or use --restart.",
                field="steps",
            )
        self.nets.load_state_dict(state["nets"])
        self.net_opt.load_state_dict(state["net_opt"])
        self.lr_opt.load_state_dict(state["lr_opt"])
        self.step, self.ema = state["step"], state["ema"]
        self.curriculum = min(state["curriculum"], self.config.max_sequence)
        self.best, self.seconds, self.history = tuple(state["best"]), state["seconds"], state["history"]
        return True

    def warm_start(self, folder: str | Path) -> dict[str, Any]:
        """Start from the networks and edit lrs of an exported checkpoint (``atelier edits train`` output)
        instead of a random init: a new run with its own settings (say, another loss weight or more
        data) that fine-tunes trained networks. Their normalisation statistics come along and keep
        updating. Returns the checkpoint's config."""
        from app.adapters.editing.dafnet import load_networks

        nets, names, info = load_networks(folder, self.lm, self.config.editor)
        if names != self.names:
            raise InvalidParameters(
                f"The checkpoint in {folder} edits other modules ({len(names)}) than this run's {self.config.blocks} "
                "blocks.",
                field="init_from",
            )
        if nets.config != self.nets.config:
            raise InvalidParameters(f"The checkpoint in {folder} has another network shape.", field="init_from")
        self.nets.load_state_dict(nets.state_dict())
        return info

    def export(self, folder: str | Path) -> None:
        save_networks(
            folder,
            self.nets,
            self.lm.name,
            self.config.editor,
            self.names,
            {
                "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "steps": self.step,
                "train_minutes": round(self.seconds / 60, 2),
                "curriculum_reached": self.curriculum,
                "training": self.config.to_dict(),
                "final_loss_ema": self.ema,
            },
        )

    def close(self) -> None:
        self.hooks.remove()
