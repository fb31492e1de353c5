"""GRACE (Hartvigsen et al., 2023): a codebook of (key, value, radius) entries at one layer.

Settings, after EasyEdit's ``hparams/GRACE``: the layer is the last decoder block's ``mlp.down_proj``
(EasyEdit takes block 27 of LLaMA-2-7B's 32), the deferral radius ``eps`` is 1.0, values are trained
with Adam at lr 1.0 for up to ``steps`` = 50 iterations (EasyEdit's ``n_iter``), stopping early once the
mean target NLL is below 1e-2. Distances are Euclidean between the layer's inputs, computed exactly
(``cdist`` without the matrix-product shortcut, whose error of ~1e-2 at these norms would decide radius
splits arbitrarily).

**Keys.** An edit's key is the layer's input at the last prompt token, the token whose output predicts
the first target token.

**Values: one row per target token.** EasyEdit replaces the key token's output with one vector and
relies on the blocks after the layer to carry it to the later target tokens. After the last block
nothing carries it (one shared vector repeats a fragment of the target), so an entry's value holds one
row per target token: row ``i`` replaces the output ``i`` positions after the match, the position
predicting target token ``i + 1``. Past the last row the layer is left alone.

**Routing (every forward).** At each position of each sequence the layer input is compared with the
codebook keys; the nearest key (ties to the latest entry; retired entries skipped) *matches* when the
distance is within its radius. From a matching position on, the outputs at that position and the next
ones take that entry's rows in order; a later match starts its own entry's rows. The state carries over
the cached steps of a generation (a forward whose ``past_key_values`` already hold tokens continues the
previous one), so a greedy answer sees exactly the replacement of the teacher-forced sequence, which is
how a value is trained: teacher-forced over the prompt and all target tokens. Batches are right-padded;
the carry-over assumes the last position of a cached call is a real token (batch 1, as ``generate``).

**A new edit** (GRACE's rule; "same target" = the same target token ids):
- no entry, or the nearest key farther than ``eps`` + its radius → a new entry with radius ``eps``;
- nearest within reach, same target → expand: its radius grows to the distance (EasyEdit's
  "coverage"), and its value is trained further on the new prompt;
- nearest within reach, another target → split: the old radius becomes d/2 − 1e-5, the new entry's
  d/2. When that leaves the old radius negative (the same prompt re-edited), the old entry is retired
  and the new one takes the full ``eps``.
A new value starts from the layer's original outputs (EasyEdit's "warm" init).

**Records.** Per edit: the new entry (``key``, ``value`` rows, ``radius``, ``target``) if any, and the
entry it changed (``changed`` index, its new ``changed_radius``, and ``changed_value`` when retrained).
The codebook after ``k`` edits is the replay of the first ``k`` records, pure copies without arithmetic,
so a rollback restores it exactly.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from app.adapters.editing.encoding import pad_id
from app.adapters.editing.hooks import last_mlp_modules, linear
from app.adapters.editing.records import RecordedEditor, locked
from app.domain.edits import EditSpec
from app.domain.errors import InvalidParameters, ModelUnavailable
from app.ports.edits import ModelEditor

EARLY_STOP_LOSS = 1e-2
SPLIT_MARGIN = 1e-5  # EasyEdit's: the old radius ends just short of the midpoint


class GraceEditor(RecordedEditor, ModelEditor):
    """The codebook: ``keys`` (N × in), ``radii`` (N), ``targets``; the value rows of all entries
    concatenated in ``values`` (S × out), entry ``j`` owning ``lengths[j]`` rows from ``starts[j]``."""

    name = "grace"

    def __init__(self, lm: Any, layer: str | None = None, eps: float = 1.0, steps: int = 50, lr: float = 1.0) -> None:
        if not eps > 0:
            raise InvalidParameters("eps must be positive.", field="eps")
        if steps < 1:
            raise InvalidParameters("steps must be at least 1.", field="steps")
        if not lr > 0:
            raise InvalidParameters("lr must be positive.", field="lr")
        super().__init__(lm)
        self.layer = layer or last_mlp_modules(lm.model, blocks=1, projections=("down_proj",))[0]
        self.eps, self.steps, self.lr = eps, steps, lr
        self.module = linear(lm.model, self.layer)
        self._pad = pad_id(lm.tokenizer)
        self.keys = self.values = self.radii = self.starts = self.lengths = torch.zeros(0)
        self.targets: list[tuple[int, ...]] = []
        self._reset()
        self._train: tuple[int, torch.Tensor] | None = None  # (entry, value rows) being optimised
        self._capture: dict[str, torch.Tensor] | None = None
        self._carry: tuple[torch.Tensor, torch.Tensor] | None = None  # per row: entry and offset at the end
        self._handles = [
            self.module.register_forward_hook(self._hook),
            lm.model.base_model.register_forward_pre_hook(self._start, with_kwargs=True),
        ]
        self.last_loss = float("nan")
        self.last_steps = 0
        lm.sequence_state_hooks.add(self)  # its carry follows one sequence at a time
        self._off = False  # inside ``unedited``: the codebook never fires

    def settings(self) -> dict[str, Any]:
        return {"layer": self.layer, "eps": self.eps, "steps": self.steps, "lr": self.lr}

    # -- the port ----------------------------------------------------------------------------------

    def apply(self, edit: EditSpec) -> None:
        encoded, ids, mask, (_, _, tokens) = self._teacher_forced(edit)
        first, length = encoded.start - 1, len(encoded.targets)
        with locked(self.lm):
            self._capture = {}
            try:
                with torch.inference_mode():
                    self.lm.model(input_ids=ids, attention_mask=mask)
                key = self._capture["x"][0, first].clone()
                outputs = self._capture["y"][0, first : first + length].clone()
            finally:
                self._capture = None
            record, entry, start = self._plan(key, outputs, encoded.targets)
            before = (self.keys, self.values, self.radii, self.starts, self.lengths, self.targets)
            self._replay(record)  # the codebook with the edit's entry, its value not trained yet
            value = start.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([value], lr=self.lr)
            self._train = (entry, value)
            try:
                target_logits = self._target_logits(encoded)
                for step in range(self.steps):
                    with torch.enable_grad():
                        loss = F.cross_entropy(target_logits(), tokens)
                    self.last_loss, self.last_steps = float(loss.detach()), step + 1
                    if self.last_loss < EARLY_STOP_LOSS:
                        break
                    optimizer.zero_grad()
                    loss.backward()  # type: ignore[no-untyped-call]
                    optimizer.step()
            finally:
                self._train = None
                self.keys, self.values, self.radii, self.starts, self.lengths, self.targets = before
            record["value" if "key" in record else "changed_value"] = value.detach().clone()
            self._push(record)

    @contextlib.contextmanager
    def unedited(self) -> Iterator[None]:
        """The model as the original inside (the codebook is off)."""
        previous, self._off = self._off, True
        try:
            yield
        finally:
            self._off = previous

    def close(self) -> None:
        """Remove the hooks (the editor is unusable afterwards)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.lm.sequence_state_hooks.discard(self)

    # -- a new edit -----------------------------------------------------------------------------------

    def _plan(
        self, key: torch.Tensor, outputs: torch.Tensor, target: list[int]
    ) -> tuple[dict[str, torch.Tensor], int, torch.Tensor]:
        """The edit's record (value rows still the start value), the entry to train, and its start value."""
        device = self._device
        new = {
            "key": key,
            "value": outputs,
            "radius": torch.tensor(self.eps, device=device),
            "target": torch.tensor(target, dtype=torch.long, device=device),
        }
        if not self.targets:
            return new, 0, outputs
        distance, nearest = self._nearest(key[None, None])
        d, j = float(distance[0, 0]), int(nearest[0, 0])
        if d > self.eps + float(self.radii[j]):
            return new, len(self.targets), outputs
        changed = torch.tensor([j], device=device)
        if self.targets[j] == tuple(target):
            radius = torch.maximum(self.radii[j], distance[0, 0].to(self.radii.dtype))
            rows = self._rows(j).clone()
            return {"changed": changed, "changed_radius": radius[None], "changed_value": rows}, j, rows
        old = d / 2 - SPLIT_MARGIN
        new["radius"] = torch.tensor(d / 2 if old >= 0 else self.eps, device=device)
        split = {"changed": changed, "changed_radius": torch.tensor([old], device=device)}
        return {**new, **split}, len(self.targets), outputs

    # -- routing --------------------------------------------------------------------------------------

    def _nearest(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per query (B × T × in): the distance to the nearest live key and its index (ties: the latest)."""
        keys = self.keys.float()[None].expand(queries.shape[0], -1, -1)
        distances = torch.cdist(queries.float(), keys, compute_mode="donot_use_mm_for_euclid_dist")
        distances = distances.masked_fill((self.radii < 0)[None, None], float("inf"))
        reverse_min, reverse_index = distances.flip(-1).min(-1)
        return reverse_min, distances.shape[-1] - 1 - reverse_index

    def _route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per position (B × T): whether the output is replaced, and by which row of ``values``."""
        batch, length, _ = x.shape
        distance, nearest = self._nearest(x)
        matched = distance <= self.radii.float()[nearest]
        where = torch.arange(length, device=x.device).expand(batch, length)
        last = torch.where(matched, where, -1).cummax(dim=1).values
        entry = torch.where(last >= 0, nearest.gather(1, last.clamp(min=0)), -1)
        offset = where - last
        if self._carry is not None and self._carry[0].shape[0] == batch:
            carried_entry, carried_offset = self._carry
            unmatched = last < 0
            entry = torch.where(unmatched, carried_entry[:, None], entry)
            offset = torch.where(unmatched, carried_offset[:, None] + 1 + where, offset)
        self._carry = (entry[:, -1].clone(), offset[:, -1].clone())
        safe = entry.clamp(min=0)
        live = (entry >= 0) & (offset < self.lengths[safe])
        return live, torch.where(live, self.starts[safe] + offset, 0)

    def _hook(self, module: Any, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
        if self._capture is not None:
            self._capture["x"], self._capture["y"] = args[0].detach(), output.detach()
            return None
        if not self.targets or self._off:
            return None
        values = self.values
        if self._train is not None:
            entry, rows = self._train
            start, end = int(self.starts[entry]), int(self.starts[entry] + self.lengths[entry])
            values = torch.cat([values[:start], rows.to(values.dtype), values[end:]])
        live, row = self._route(args[0])
        if not bool(live.any()):
            return None
        return torch.where(live[..., None], values[row].to(output.dtype), output)

    def _start(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """A forward without cached tokens starts new sequences: forget where the previous ones were."""
        past = kwargs.get("past_key_values")
        seen = past.get_seq_length() if past is not None and hasattr(past, "get_seq_length") else 0
        if not seen:
            self._carry = None

    # -- the state ------------------------------------------------------------------------------------

    def _rows(self, j: int) -> torch.Tensor:
        start = int(self.starts[j])
        return self.values[start : start + int(self.lengths[j])]

    def _reset(self) -> None:
        weight = self.module.weight
        self.keys = torch.zeros(0, self.module.in_features, device=weight.device, dtype=weight.dtype)
        self.values = torch.zeros(0, self.module.out_features, device=weight.device, dtype=weight.dtype)
        self.radii = torch.zeros(0, device=weight.device)
        self.starts = torch.zeros(0, dtype=torch.long, device=weight.device)
        self.lengths = torch.zeros(0, dtype=torch.long, device=weight.device)
        self.targets = []

    def _replay(self, record: dict[str, torch.Tensor]) -> None:
        """One record onto the codebook, out of place (the tensors before it stay valid)."""
        keys, values, radii, starts, lengths = self.keys, self.values, self.radii, self.starts, self.lengths
        if "key" in record:
            self._check(record)
            count = torch.tensor([record["value"].shape[0]], device=lengths.device)
            keys = torch.cat([keys, record["key"][None].to(keys.dtype)])
            starts = torch.cat([starts, torch.tensor([values.shape[0]], device=starts.device)])
            lengths = torch.cat([lengths, count])
            values = torch.cat([values, record["value"].to(values.dtype)])
            radii = torch.cat([radii, record["radius"].reshape(1).to(radii.dtype)])
            self.targets = [*self.targets, tuple(int(t) for t in record["target"].tolist())]
        if "changed" in record:
            j = int(record["changed"][0])
            radii = radii.clone()
            radii[j] = record["changed_radius"][0].to(radii.dtype)
            if "changed_value" in record:
                start, end = int(starts[j]), int(starts[j] + lengths[j])
                if record["changed_value"].shape != values[start:end].shape:
                    raise ModelUnavailable("A stored GRACE value does not fit its entry.")
                values = values.clone()
                values[start:end] = record["changed_value"].to(values.dtype)
        self.keys, self.values, self.radii, self.starts, self.lengths = keys, values, radii, starts, lengths

    def _rebuild(self) -> None:
        """Replay every record at once: the same copies as :meth:`_replay`, concatenated once."""
        self._reset()
        keys: list[torch.Tensor] = []
        blocks: list[torch.Tensor] = []
        radii: list[torch.Tensor] = []
        targets: list[tuple[int, ...]] = []
        for record in self.records:
            if "key" in record:
                self._check(record)
                keys.append(record["key"])
                blocks.append(record["value"])
                radii.append(record["radius"].reshape(()))
                targets.append(tuple(int(t) for t in record["target"].tolist()))
            if "changed" in record:
                j = int(record["changed"][0])
                radii[j] = record["changed_radius"][0]
                if "changed_value" in record:
                    if record["changed_value"].shape != blocks[j].shape:
                        raise ModelUnavailable("A stored GRACE value does not fit its entry.")
                    blocks[j] = record["changed_value"]
        if keys:
            counts = [b.shape[0] for b in blocks]
            device = self.starts.device
            self.keys = torch.stack(keys).to(self.keys)
            self.values = torch.cat(blocks).to(self.values)
            self.radii = torch.stack(radii).to(self.radii)
            self.lengths = torch.tensor(counts, dtype=torch.long, device=device)
            self.starts = torch.tensor([0, *itertools.accumulate(counts[:-1])], dtype=torch.long, device=device)
        self.targets = targets

    def _check(self, record: dict[str, torch.Tensor]) -> None:
        key, value, target = record["key"], record["value"], record["target"]
        if key.shape != (self.module.in_features,) or value.shape != (target.numel(), self.module.out_features):
            raise ModelUnavailable("A stored GRACE entry does not fit the edited layer.")
