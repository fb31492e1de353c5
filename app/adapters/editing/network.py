"""DAFNet's auxiliary network (Zhang et al. 2024, "Dynamic Auxiliary Fusion for Sequential Model Editing"),
and MEND as its ablation.

One network per distinct edited-weight shape; modules of the same shape share it and are told apart by
a learned per-module scale and shift ("mode", as in MEND). Its input is the editing signal of one or
more edits: per token, the edited Linear layer's input u and output gradient δ, concatenated
(d = in + out). Each of its ``layers`` does, in this order (as the authors implement it):

1. **Intra-editing attention flow** (token level): an MLP transforms every token; a second MLP scores
   it; the scores are softmaxed over the tokens of each edit; the score-weighted tokens are summed into
   the edit's *sample representation* and added back to the tokens as a residual (then LayerNorm).
2. **Inter-editing attention flow** (sequence level): each new edit's representation attends, with a
   causal mask, over the stored representations of every earlier edit (the bank) and the new edits up
   to itself; the result is added to that edit's tokens (then LayerNorm).
3. **"Diagonal" gate**: a second, score-only causal attention over the same keys; its diagonal (each
   new edit's attention to itself) is the gate s. With p_i = Π_{j≥i} (1 − s_j), edit i's update weight
   is s_i · p_{i+1} and every earlier update decays by p_1 = Π (1 − s_j): a new edit that attends only to
   itself replaces, one that attends to the past keeps it.
4. An FFN (then LayerNorm), the per-module scale/shift and MEND's clamped residual x + relu(x·scale + shift).

The output is split into x₁ (the u part) and x₂ (the δ part); x₂ is scaled by the edit's weight and
divided by its token count; ΔW = x₁ᵀx₂, a sum of rank-1 outer products (MEND's decomposition).

Choices where the authors' code and the paper's description part (documented, configurable):

- The authors' code detaches the gate (``update_scale.detach()``), so the score attention keeps its
  initial weights and the gate is never trained. Here the gate is trained through the losses
  (``detach_gate=False``), as the paper describes a learned fusion; ``detach_gate=True`` reproduces the
  code.
- The authors average each layer's weights and decay (products of that layer's gates) over the layers;
  a mean of products is not a product of means, so N edits applied at once in training got other weights
  than the same N applied one after another at edit time. Here the gates are averaged over the layers
  first and the weights and decay computed once from them, so the two agree exactly (tested).
- Widths are scaled down for CPU meta-training (the authors use 1024 / 1536 / 2×1024 / 2×256 for 7B models).
- ``inter_edit=False`` is the MEND ablation: no inter-editing attention and no gate (every edit's weight
  is 1 and nothing decays: updates are summed, as MEND sums them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class NetworkConfig:
    layers: int = 2
    inner_dim: int = 256
    ffn_dim: int = 512
    outer_dim: int = 128
    outer_heads: int = 2
    score_dim: int = 64
    score_heads: int = 2
    inter_edit: bool = True
    detach_gate: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RunningNorm(nn.Module):
    """Normalises each input dimension by the mean and standard deviation of every token seen while
    training (exact running statistics, as the authors' ``ExactBatchNorm1d``); frozen in eval mode."""

    count: torch.Tensor
    mean: torch.Tensor
    m2: torch.Tensor

    def __init__(self, dim: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(dim, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                batch = x.detach().double()
                n = batch.shape[0]
                batch_mean = batch.mean(0)
                delta = batch_mean - self.mean
                total = self.count + n
                self.mean += delta * n / total
                self.m2 += ((batch - batch_mean) ** 2).sum(0) + delta**2 * self.count * n / total
                self.count.fill_(total)
        if self.count < 2:
            return x
        std = (self.m2 / (self.count - 1)).sqrt().to(x.dtype)
        return (x - self.mean.to(x.dtype)) / (std + self.eps)


class _Attention(nn.Module):
    """Multi-head attention of queries over keys with an additive mask; ``scores_only`` returns the
    head-averaged attention probabilities instead of the attended values."""

    def __init__(self, dim: int, heads: int, head_dim: int, scores_only: bool = False) -> None:
        super().__init__()
        self.heads, self.head_dim, self.scores_only = heads, head_dim, scores_only
        self.q = nn.Linear(dim, heads * head_dim)
        self.k = nn.Linear(dim, heads * head_dim)
        if not scores_only:
            self.v = nn.Linear(dim, heads * head_dim)
            self.o = nn.Linear(heads * head_dim, dim)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        nq, nk = queries.shape[0], keys.shape[0]
        q = self.q(queries).view(nq, self.heads, self.head_dim).transpose(0, 1)
        k = self.k(keys).view(nk, self.heads, self.head_dim).transpose(0, 1)
        probs = torch.softmax(q @ k.transpose(1, 2) / self.head_dim**0.5 + mask, dim=-1)  # heads × nq × nk
        if self.scores_only:
            return probs.mean(0)
        v = self.v(keys).view(nk, self.heads, self.head_dim).transpose(0, 1)
        attended: torch.Tensor = self.o((probs @ v).transpose(0, 1).reshape(nq, -1))
        return attended


def causal_mask(past: int, new: int, device: torch.device) -> torch.Tensor:
    """New edit i (0-based) sees every past edit and new edits 0..i."""
    mask = torch.zeros((new, past + new), device=device)
    blocked = torch.triu(torch.ones((new, past + new), dtype=torch.bool, device=device), diagonal=past + 1)
    return mask.masked_fill(blocked, float("-inf"))


class DafLayer(nn.Module):
    def __init__(self, dim: int, config: NetworkConfig, modes: int) -> None:
        super().__init__()
        self.config = config
        self.transform = nn.Sequential(nn.Linear(dim, config.inner_dim), nn.ReLU(), nn.Linear(config.inner_dim, dim))
        self.score = nn.Sequential(nn.Linear(dim, config.inner_dim), nn.ReLU(), nn.Linear(config.inner_dim, 1))
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        if config.inter_edit:
            self.inter = _Attention(dim, config.outer_heads, config.outer_dim)
            self.gate = _Attention(dim, config.score_heads, config.score_dim, scores_only=True)
        self.ffn = nn.Sequential(nn.Linear(dim, config.ffn_dim), nn.ReLU(), nn.Linear(config.ffn_dim, dim))
        self.mode_scale = nn.Embedding(modes, dim)
        self.mode_shift = nn.Embedding(modes, dim)
        nn.init.ones_(self.mode_scale.weight)
        nn.init.zeros_(self.mode_shift.weight)

    def forward(
        self, x: torch.Tensor, lengths: list[int], bank: torch.Tensor, mode: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """x: tokens of the new edits (Σ lengths × d); bank: earlier edits' representations (P × d).

        Returns the tokens, the new edits' representations (N × d) and their gates s (N; ``None`` without
        inter-editing attention)."""
        n = len(lengths)
        counts = torch.tensor(lengths, device=x.device)
        edit_of_token = torch.repeat_interleave(torch.arange(n, device=x.device), counts)
        transformed = self.transform(x)
        scores = self.score(transformed).squeeze(-1)
        # softmax of the scores within each edit
        peak = torch.zeros(n, device=x.device).scatter_reduce(0, edit_of_token, scores, "amax", include_self=False)
        weights = (scores - peak[edit_of_token]).exp()
        weights = weights / torch.zeros(n, device=x.device).index_add(0, edit_of_token, weights)[edit_of_token]
        weighted = transformed * weights.unsqueeze(-1)
        reps = torch.zeros((n, x.shape[1]), device=x.device, dtype=x.dtype).index_add(0, edit_of_token, weighted)
        x = self.norm1(x + weighted)
        gate = None
        if self.config.inter_edit:
            keys = torch.cat([bank, reps], 0)
            mask = causal_mask(bank.shape[0], n, x.device)
            x = self.norm2(x + self.inter(reps, keys, mask)[edit_of_token])
            diagonal = bank.shape[0] + torch.arange(n, device=x.device)
            gate = self.gate(reps, keys, mask)[torch.arange(n, device=x.device), diagonal]
            if self.config.detach_gate:
                gate = gate.detach()
        x = self.norm3(x + self.ffn(x))
        index = torch.tensor(mode, device=x.device)
        x = x + F.relu(x * self.mode_scale(index) + self.mode_shift(index))
        return x, reps, gate


def fuse(gate: torch.Tensor | None, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Update weights of the new edits and the decay of earlier updates from their gates s:
    p_i = Π_{j≥i} (1 − s_j), weight_i = s_i · p_{i+1}, decay = p_1 (no gate: weights 1, no decay)."""
    if gate is None:
        return torch.ones(n, device=device), torch.ones((), device=device)
    keep = torch.flip(torch.cumprod(torch.flip(1 - gate, (0,)), 0), (0,))
    return gate * torch.cat([keep[1:], torch.ones(1, device=device)]), keep[0]


class DafNetwork(nn.Module):
    """The auxiliary network of one weight shape (in_dim → out_dim Linear layers)."""

    def __init__(self, in_dim: int, out_dim: int, config: NetworkConfig, modes: int) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.config = in_dim, out_dim, config
        dim = in_dim + out_dim
        self.norm = RunningNorm(dim)
        self.layers = nn.ModuleList(DafLayer(dim, config, modes) for _ in range(config.layers))

    def forward(
        self, x: torch.Tensor, lengths: list[int], banks: list[torch.Tensor], mode: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: [u; δ] per token of the new edits; banks: per layer, the earlier edits' representations.

        Returns x₁ (tokens × in), x₂ (tokens × out; already scaled by the edit's weight / its token count),
        the new edits' representations per layer (layers × N × d) and the decay of earlier updates."""
        x = self.norm(x)
        reps, gates = [], []
        for layer, bank in zip(self.layers, banks, strict=True):
            x, rep, gate = layer(x, lengths, bank, mode)
            reps.append(rep)
            gates.append(gate)
        mean_gate = None if gates[0] is None else torch.stack(gates).mean(0)
        update, decay = fuse(mean_gate, len(lengths), x.device)
        counts = torch.tensor(lengths, device=x.device, dtype=x.dtype)
        per_token = torch.repeat_interleave(update / counts, torch.tensor(lengths, device=x.device))
        x1, x2 = x[:, : self.in_dim], x[:, self.in_dim :]
        return x1, x2 * per_token.unsqueeze(-1), torch.stack(reps), decay

    def empty_banks(self, device: torch.device) -> list[torch.Tensor]:
        return [torch.zeros((0, self.in_dim + self.out_dim), device=device) for _ in self.layers]
