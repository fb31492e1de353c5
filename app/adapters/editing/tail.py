"""Running only the decoder blocks an edit changes, from hidden states cached once.

What an edit changes lies in the blocks from the first edited one on, so the hidden states entering that
block do not depend on it. An optimisation loop (FT-L, GRACE, the DAFNet trainer) computes them once and
then runs only the remaining blocks, the final norm and the output head at the scored positions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch

from app.adapters.editing.encoding import Encoded, pad, target_positions


def block_of(name: str) -> int | None:
    """The decoder block index of a module named ``model.layers.<i>.…``, else ``None``."""
    parts = name.split(".")
    return int(parts[2]) if len(parts) > 2 and parts[:2] == ["model", "layers"] and parts[2].isdigit() else None


class _Stop(Exception):
    pass


class TailRunner:
    """Runs only the decoder blocks from ``first`` on, from cached hidden states.

    :meth:`prefix` computes the hidden states entering block ``first`` (the forward stops there), and
    :meth:`target_logits` runs the rest. Exact (the same operations on the same inputs; a test compares
    it with the full model)."""

    def __init__(self, model: Any, first: int, pad_token: int) -> None:
        self.model, self.first, self.pad = model, first, pad_token
        self.device = next(model.parameters()).device

    def prefix(self, batch: Sequence[Encoded], chunk: int = 32) -> list[torch.Tensor]:
        """The hidden states entering block ``first``, one tensor (len × hidden) per sequence."""
        out: list[torch.Tensor] = []
        captured: list[torch.Tensor] = []

        def grab(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            captured.append((args[0] if args else kwargs["hidden_states"]).detach())
            raise _Stop

        handle = self.model.model.layers[self.first].register_forward_pre_hook(grab, with_kwargs=True)
        try:
            with torch.no_grad():  # not inference_mode: the cached states enter autograd graphs later
                for i in range(0, len(batch), chunk):
                    part = batch[i : i + chunk]
                    ids, mask = pad(part, self.pad, self.device)
                    captured.clear()
                    with contextlib.suppress(_Stop):
                        self.model(input_ids=ids, attention_mask=mask, use_cache=False)
                    hidden = captured[0]
                    out += [hidden[row, : len(e.ids)].clone() for row, e in enumerate(part)]
        finally:
            handle.remove()
        return out

    def target_logits(self, hidden: Sequence[torch.Tensor], batch: Sequence[Encoded]) -> torch.Tensor:
        """Logits at every target position of ``batch`` (``target_positions`` order), from ``hidden``."""
        width = max(h.shape[0] for h in hidden)
        states = torch.zeros((len(hidden), width, hidden[0].shape[1]), device=self.device)
        mask = torch.zeros((len(hidden), width), dtype=torch.long, device=self.device)
        for row, h in enumerate(hidden):
            states[row, : h.shape[0]] = h
            mask[row, : h.shape[0]] = 1
        layers = self.model.model.layers
        self.model.model.layers = torch.nn.ModuleList(list(layers)[self.first :])
        try:
            last = self.model.model(inputs_embeds=states, attention_mask=mask, use_cache=False).last_hidden_state
        finally:
            self.model.model.layers = layers
        rows, positions, _ = target_positions(batch)
        head = self.model.get_output_embeddings()
        logits: torch.Tensor = head(last[rows.to(self.device), positions.to(self.device)]).float()
        return logits
