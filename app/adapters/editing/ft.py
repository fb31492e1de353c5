"""FT-L: constrained fine-tuning of one layer (the FT baseline of ROME and EasyEdit).

Per edit, a weight delta of one Linear layer (default: the last decoder block's ``mlp.down_proj``; EasyEdit
edits the ``down_proj`` of block 21 of LLaMA-2-7B's 32) is optimised with Adam on the mean teacher-forced
NLL of the target tokens after the edit prompt, through :class:`DeltaHooks`, so the base weights are never
written. After every
step the *cumulative* delta (all edits so far plus this one) is clamped elementwise to
``±norm_constraint``: FT-L's L∞ constraint relative to the original weights. (ROME's code clamps relative
to the weights at the start of each call, so a chain of ``n`` edits may drift ``n·ε``; here the whole
chain stays within ``ε`` of the original model.) ``norm_constraint=None`` is unconstrained FT.

Defaults follow EasyEdit's ``hparams/FT`` and ROME's constrained FT (``gpt2-xl_constr.json``): 25
steps, lr 5e-4, ε 5e-4, and ROME's early stop once the loss is below 1e-2. These are sized for
billion-parameter models, whose single-layer updates need little magnitude; a tiny model needs a larger
lr and ε (the tests use lr 2e-2 and ε 0.2; docs/model-edits.md has the settings used on SmolLM2).

The record of an edit is the delta increment it added; the applied delta is always the left fold
``((0 + d₁) + d₂) + …`` of the stored increments (the first term cloned), in apply, rollback and load
alike, so a rollback reproduces the state right after an edit bit for bit.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch
import torch.nn.functional as F

from app.adapters.editing.encoding import pad_id
from app.adapters.editing.hooks import DeltaHooks, last_mlp_modules
from app.adapters.editing.records import RecordedEditor, locked
from app.domain.edits import EditSpec
from app.domain.errors import InvalidParameters, ModelUnavailable
from app.ports.edits import ModelEditor

EARLY_STOP_LOSS = 1e-2  # ROME's ft_main stops once the mean target NLL is below this


class FtEditor(RecordedEditor, ModelEditor):
    name = "ft"

    def __init__(
        self,
        lm: Any,
        layer: str | None = None,
        steps: int = 25,
        lr: float = 5e-4,
        norm_constraint: float | None = 5e-4,
    ) -> None:
        if steps < 1:
            raise InvalidParameters("steps must be at least 1.", field="steps")
        if not lr > 0:
            raise InvalidParameters("lr must be positive.", field="lr")
        if norm_constraint is not None and not norm_constraint > 0:
            raise InvalidParameters(
                "norm_constraint must be positive (or None: unconstrained).", field="norm_constraint"
            )
        super().__init__(lm)
        self.layer = layer or last_mlp_modules(lm.model, blocks=1, projections=("down_proj",))[0]
        self.steps, self.lr, self.norm_constraint = steps, lr, norm_constraint
        self.hooks = DeltaHooks(lm.model, [self.layer])
        self._pad = pad_id(lm.tokenizer)
        self.last_loss = float("nan")
        self.last_steps = 0

    def settings(self) -> dict[str, Any]:
        return {"layer": self.layer, "steps": self.steps, "lr": self.lr, "norm_constraint": self.norm_constraint}

    def unedited(self) -> AbstractContextManager[None]:
        """The model as the original inside (the deltas are off)."""
        return self.hooks.disabled()

    def apply(self, edit: EditSpec) -> None:
        encoded, _, _, (_, _, tokens) = self._teacher_forced(edit)
        module = self.hooks.modules[0]
        with locked(self.lm):
            target_logits = self._target_logits(encoded)
            base = self.hooks.deltas[0]
            increment = torch.zeros(module.in_features, module.out_features, device=self._device, requires_grad=True)
            optimizer = torch.optim.Adam([increment], lr=self.lr)
            try:
                for step in range(self.steps):
                    self.hooks.deltas[0] = _add(base, increment)
                    with torch.enable_grad():
                        loss = F.cross_entropy(target_logits(), tokens)
                    self.last_loss, self.last_steps = float(loss.detach()), step + 1
                    if self.last_loss < EARLY_STOP_LOSS:
                        break
                    optimizer.zero_grad()
                    loss.backward()  # type: ignore[no-untyped-call]
                    optimizer.step()
                    if self.norm_constraint is not None:
                        with torch.no_grad():
                            total = _add(base, increment).clamp(-self.norm_constraint, self.norm_constraint)
                            increment.copy_(total if base is None else total - base)
            finally:
                self.hooks.deltas[0] = base
            self._push({"delta": increment.detach().clone()})

    def close(self) -> None:
        """Remove the hooks (the editor is unusable afterwards)."""
        self.hooks.remove()

    def _reset(self) -> None:
        self.hooks.clear()

    def _replay(self, record: dict[str, torch.Tensor]) -> None:
        module = self.hooks.modules[0]
        if tuple(record["delta"].shape) != (module.in_features, module.out_features):
            raise ModelUnavailable(f"A stored delta has shape {tuple(record['delta'].shape)}, not the layer's.")
        delta = self.hooks.deltas[0]
        self.hooks.deltas[0] = record["delta"].clone() if delta is None else delta + record["delta"]


def _add(base: torch.Tensor | None, increment: torch.Tensor) -> torch.Tensor:
    return increment if base is None else base + increment
