"""The target loss of a batch of edits and the editing signal (u, δ) that MEND's and DAFNet's hyper-networks
turn into weight deltas: the edited layers' inputs and the gradients of the loss at their outputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from app.adapters.editing.encoding import Encoded, pad, target_positions
from app.domain.errors import ModelUnavailable


def full_target_logits(model: Any, batch: Sequence[Encoded], pad_token: int) -> torch.Tensor:
    """Logits predicting every target token of the batch, in ``target_positions`` order (full model)."""
    device = next(model.parameters()).device
    ids, mask = pad(batch, pad_token, device)
    rows, positions, _ = target_positions(batch)
    logits: torch.Tensor = model(input_ids=ids, attention_mask=mask).logits
    return logits[rows.to(device), positions.to(device)].float()


TargetLogits = Callable[[Sequence[Encoded]], torch.Tensor]


def target_nll(logits: torch.Tensor, batch: Sequence[Encoded]) -> torch.Tensor:
    """Sum over edits of each edit's mean target NLL (so one edit's loss does not depend on the others)."""
    _, _, tokens = target_positions(batch)
    rows = target_positions(batch)[0]
    lengths = torch.tensor([len(e.targets) for e in batch], dtype=torch.float32, device=logits.device)[rows]
    nll = torch.nn.functional.cross_entropy(logits, tokens.to(logits.device), reduction="none")
    return (nll / lengths).sum()


def editing_signal(
    model: Any,
    modules: Sequence[torch.nn.Linear],
    batch: Sequence[Encoded],
    pad_token: int,
    target_logits: TargetLogits | None = None,
) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Per edit and per module: the layer inputs u (tokens × in) and output gradients δ (tokens × out) of
    the target NLL, for the tokens where both are non-zero (MEND's and DAFNet's editing signal).

    The caller runs it with any edit deltas disabled, so the signal is taken on the original weights as
    the authors' frozen copy gives it, without a second copy of the model: only the edited layers'
    weights require a gradient, and only for this pass. ``target_logits`` computes the logits (default:
    the full model; the trainer runs only the blocks from the first edited one)."""
    run = target_logits or (lambda b: full_target_logits(model, b, pad_token))
    inputs: list[torch.Tensor | None] = [None] * len(modules)
    grads: list[torch.Tensor | None] = [None] * len(modules)

    def capture(i: int) -> Any:
        def hook(module: Any, args: tuple[Any, ...], output: torch.Tensor) -> None:
            inputs[i] = args[0].detach()

            def keep(grad: torch.Tensor) -> None:
                grads[i] = grad.detach()

            output.register_hook(keep)  # type: ignore[no-untyped-call]

        return hook

    handles = [m.register_forward_hook(capture(i)) for i, m in enumerate(modules)]
    weights = [m.weight for m in modules]
    try:
        for w in weights:
            w.requires_grad_(True)
        with torch.enable_grad():
            torch.autograd.grad(target_nll(run(batch), batch), weights)
    finally:
        for handle in handles:
            handle.remove()
        for w in weights:
            w.requires_grad_(False)
            w.grad = None
    signal: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
    for row, e in enumerate(batch):
        per_module = []
        for i in range(len(modules)):
            grad, x = grads[i], inputs[i]
            if grad is None or x is None:
                raise ModelUnavailable("The edited layers were not reached by the forward pass.")
            u = x[row, : len(e.ids)].float()
            d = grad[row, : len(e.ids)].float()
            keep = (u != 0).any(-1) & (d != 0).any(-1)
            per_module.append((u[keep], d[keep]))
        signal.append(per_module)
    return signal
