"""The edited layers and their weight deltas: finding a model's Linear layers by name and adding a delta
to their outputs through forward hooks, so the base weights stay untouched until a merge is asked for."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from app.domain.errors import ModelUnavailable


def linear(model: Any, name: str) -> torch.nn.Linear:
    """The Linear layer at the dotted path ``name`` (digits index into module lists)."""
    module = model
    for part in name.split("."):
        module = getattr(module, part, None) if not part.isdigit() else _index(module, int(part))
        if module is None:
            raise ModelUnavailable(f"The model has no module {name!r}.")
    # A layer that a served LoRA adapter wraps: the base Linear inside it (the adapter's output adds to its own).
    module = getattr(module, "base_layer", module)
    if not isinstance(module, torch.nn.Linear):
        raise ModelUnavailable(f"{name!r} is not a Linear layer.")
    return module


def _index(module: Any, i: int) -> Any:
    try:
        return module[i]
    except (TypeError, IndexError):
        return None


def last_mlp_modules(
    model: Any, blocks: int = 3, projections: Sequence[str] = ("gate_proj", "up_proj", "down_proj")
) -> list[str]:
    """The MLP projections of the last ``blocks`` decoder blocks (DAFNet's and MEND's edited modules)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not layers:
        raise ModelUnavailable("Expected a Llama-style model (model.layers).")
    first = max(0, len(layers) - blocks)
    names = [f"model.layers.{i}.mlp.{p}" for i in range(first, len(layers)) for p in projections]
    for name in names:
        linear(model, name)
    return names


class DeltaHooks:
    """Additive weight deltas on Linear layers through forward hooks: ``y = W x + x D`` with ``D`` of shape
    (in, out), so the base weights are never written; ``merge`` folds them in on request only."""

    def __init__(self, model: Any, names: Sequence[str]) -> None:
        self.names = list(names)
        self.modules = [linear(model, n) for n in self.names]
        self.deltas: list[torch.Tensor | None] = [None] * len(self.modules)
        self.enabled = True
        self._handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.modules)]

    def _hook(self, i: int) -> Any:
        def add_delta(module: Any, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
            delta = self.deltas[i]
            if not self.enabled or delta is None:
                return None
            shifted: torch.Tensor = output + args[0] @ delta.to(output.dtype)
            return shifted

        return add_delta

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        previous, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = previous

    def clear(self) -> None:
        self.deltas = [None] * len(self.modules)

    def merge(self) -> None:
        """Add the deltas into the weights and clear them (irreversible for this process)."""
        with torch.no_grad():
            for module, delta in zip(self.modules, self.deltas, strict=True):
                if delta is not None:
                    module.weight += delta.T.to(module.weight.dtype)
        self.clear()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
