"""What every editor of a transformers causal LM shares: encoding an edit, additive weight-delta hooks,
the editing signal (u, δ) of MEND and DAFNet, and teacher-forced predictions.

Edits are encoded the way the model is asked (``TransformersLanguageModel.encode_answer``: the chat
template with the system prompt when the tokenizer has one, and the end-of-turn token after the target),
so an edit changes the answers ``atelier ask`` gives, and the scores measure exactly that.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from app.domain.errors import InvalidParameters, ModelUnavailable


@dataclass(frozen=True)
class Encoded:
    """A prompt followed by its target: ``ids`` = prompt + target, the target starting at ``start``."""

    ids: list[int]
    start: int

    @property
    def targets(self) -> list[int]:
        return self.ids[self.start :]


def encode(lm: Any, prompt: str, target: str) -> Encoded:
    """Raises ``InvalidParameters`` when the target encodes to nothing or the sequence is too long."""
    try:
        prompt_ids, target_ids = lm.encode_answer(prompt, target)
    except InvalidParameters as e:
        raise InvalidParameters(
            f"The target {target!r} cannot be encoded by {lm.name}'s tokenizer.", field="target"
        ) from e
    limit = getattr(lm.model.config, "max_position_embeddings", None)
    if limit is not None and len(prompt_ids) + len(target_ids) > limit:
        raise InvalidParameters(f"The prompt and target need more than {limit} tokens.", field="prompt")
    if not prompt_ids:
        raise InvalidParameters("The prompt encodes to no tokens.", field="prompt")
    return Encoded([*prompt_ids, *target_ids], len(prompt_ids))


def pad(batch: Sequence[Encoded], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask (right padding keeps every real position's causal context)."""
    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        ids[row, : len(e.ids)] = torch.tensor(e.ids)
        mask[row, : len(e.ids)] = 1
    return ids.to(device), mask.to(device)


def target_positions(batch: Sequence[Encoded]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, position predicting the token, the token) for every target token of the batch."""
    rows, positions, tokens = [], [], []
    for row, e in enumerate(batch):
        for j in range(e.start, len(e.ids)):
            rows.append(row)
            positions.append(j - 1)
            tokens.append(e.ids[j])
    return torch.tensor(rows), torch.tensor(positions), torch.tensor(tokens)


def pad_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def linear(model: Any, name: str) -> torch.nn.Linear:
    module = model
    for part in name.split("."):
        module = getattr(module, part, None) if not part.isdigit() else _index(module, int(part))
        if module is None:
            raise ModelUnavailable(f"The model has no module {name!r}.")
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


def teacher_forced(model: Any, batch: Sequence[Encoded], pad_token: int, chunk: int = 16) -> list[list[int]]:
    """The argmax token at each target position of each sequence (the model fed the true prefix)."""
    return teacher_forced_margins(model, batch, pad_token, chunk)[0]


def teacher_forced_margins(
    model: Any, batch: Sequence[Encoded], pad_token: int, chunk: int = 16
) -> tuple[list[list[int]], list[list[float]]]:
    """:func:`teacher_forced`'s argmax tokens and, at each position, the margin of the top token over the
    runner-up in log-probability (nats): how far the model is from changing its prediction there."""
    device = next(model.parameters()).device
    tokens: list[list[int]] = []
    margins: list[list[float]] = []
    with torch.inference_mode():
        for i in range(0, len(batch), chunk):
            part = batch[i : i + chunk]
            ids, mask = pad(part, pad_token, device)
            logits = model(input_ids=ids, attention_mask=mask).logits
            for row, e in enumerate(part):
                span = logits[row, e.start - 1 : len(e.ids) - 1].float()
                top = span.topk(min(2, span.shape[-1]), -1)
                gap = top.values[:, 0] - top.values[:, -1]  # the log-softmax's shift cancels in the difference
                tokens.append([int(t) for t in top.indices[:, 0].tolist()])
                margins.append([float(g) for g in gap.tolist()])
    return tokens, margins


def accuracy(predicted: Sequence[Sequence[int]], batch: Sequence[Encoded]) -> float:
    """Mean over sequences of the share of target tokens predicted exactly."""
    if not batch:
        return float("nan")
    shares = [
        sum(int(p == t) for p, t in zip(pred, e.targets, strict=True)) / len(e.targets)
        for pred, e in zip(predicted, batch, strict=True)
    ]
    return sum(shares) / len(shares)


class _Stop(Exception):
    pass


class TailRunner:
    """Runs only the decoder blocks from ``first`` on, from cached hidden states.

    What an edit changes lies in those blocks, so the hidden states entering block ``first`` do not
    depend on it: :meth:`prefix` computes them once (the forward stops there), and every optimisation
    step runs only the remaining blocks, the final norm and the output head at the scored positions.
    Exact (the same operations on the same inputs; a test compares it with the full model)."""

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


def block_of(name: str) -> int | None:
    """The decoder block index of a module named ``model.layers.<i>.…``, else ``None``."""
    parts = name.split(".")
    return int(parts[2]) if len(parts) > 2 and parts[:2] == ["model", "layers"] and parts[2].isdigit() else None


class RecordFolder:
    """An editor's state on disk: one safetensors file per edit (``00001.safetensors``, ...) and a
    ``manifest.json`` naming the editor, the model, the number of edits in the state and the
    editor's settings. Records are written once: exporting after the n-th edit writes one file and
    rewrites the manifest atomically; a rollback only lowers the count. The stored records past the
    count are overwritten by later edits."""

    MANIFEST = "manifest.json"

    def __init__(self, folder: str) -> None:
        from pathlib import Path

        self.path = Path(folder)

    def manifest(self) -> dict[str, Any] | None:
        import json

        file = self.path / self.MANIFEST
        if not file.is_file():
            return None
        try:
            data: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ModelUnavailable(f"The edit state in {self.path} is unreadable: {e}") from e
        return data

    def write(
        self, editor: str, model: str, records: Sequence[dict[str, torch.Tensor]], settings: dict[str, Any], clean: int
    ) -> None:
        """Store ``records`` as the state. The first ``clean`` of them are known to be stored already (the
        editor counts them: loaded or exported, and not rolled back since); the rest are written, then
        the manifest."""
        import json
        import os

        from safetensors.torch import save_file

        self.path.mkdir(parents=True, exist_ok=True)
        old = self.manifest()
        same = old is not None and old.get("editor") == editor and old.get("model") == model
        start = min(clean, int(old.get("count", 0)), len(records)) if same and old is not None else 0
        for i in range(start, len(records)):
            tmp = self.path / f".{i + 1:05d}.tmp"
            save_file({k: v.detach().contiguous().cpu() for k, v in records[i].items()}, str(tmp))
            os.replace(tmp, self.path / f"{i + 1:05d}.safetensors")
        manifest = {"editor": editor, "model": model, "count": len(records), "settings": settings}
        tmp = self.path / ".manifest.tmp"
        tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        os.replace(tmp, self.path / self.MANIFEST)

    def read(self, editor: str, model: str, keep: int) -> tuple[list[dict[str, torch.Tensor]], dict[str, Any]]:
        """The first ``keep`` records and the stored settings; raises ``ModelUnavailable`` when the folder
        holds fewer or belongs to another editor or model."""
        from safetensors.torch import load_file

        manifest = self.manifest() or {"editor": editor, "model": model, "count": 0, "settings": {}}
        if keep and (manifest.get("editor"), manifest.get("model")) != (editor, model):
            raise ModelUnavailable(
                f"The edit state in {self.path} was written by {manifest.get('editor')!r} for "
                f"{manifest.get('model')!r}, not by {editor!r} for {model!r}."
            )
        if keep > int(manifest.get("count", 0)):
            raise ModelUnavailable(f"The edit state in {self.path} holds {manifest.get('count', 0)} edits, not {keep}.")
        try:
            records = [load_file(str(self.path / f"{i + 1:05d}.safetensors")) for i in range(keep)]
        except OSError as e:
            raise ModelUnavailable(f"The edit state in {self.path} is incomplete: {e}") from e
        return records, dict(manifest.get("settings", {}))
