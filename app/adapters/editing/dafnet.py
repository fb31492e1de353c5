"""The DAFNet editor (and MEND, its ablation): a meta-trained auxiliary network turns each edit's
editing signal into weight deltas of the last blocks' MLP projections, applied by forward hooks.

Per edit, per edited module, the network gives x₁, x₂ (ΔW_new = x₁ᵀx₂), the decay of earlier updates
and the edit's representations; the running delta is ΔW ← decay·ΔW + lr·ΔW_new, with a learned lr per
module. The per-edit record keeps x₁, lr·x₂, the decay and the representations, so the state after
``k`` edits is the left fold of the first ``k`` records: applying folds one more record with the same
arithmetic, a rollback refolds the kept ones, so both give the same bits. The representation bank of
the inter-editing attention is the stack of the kept records' representations.

The editing signal is taken with the deltas switched off (the original weights), instead of the
authors' frozen second copy of the model: the memory of one copy is saved (measured by
``benchmarks.editing``: the edited model's parameter bytes).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch

from app.adapters.editing.encoding import encode, pad_id
from app.adapters.editing.hooks import DeltaHooks
from app.adapters.editing.network import DafNetwork, NetworkConfig
from app.adapters.editing.records import RecordedEditor, locked
from app.adapters.editing.signal import editing_signal
from app.domain.edits import EditorNotTrained, EditSpec
from app.domain.errors import ModelUnavailable
from app.ports.edits import ModelEditor

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "networks.safetensors"


def shape_key(module: torch.nn.Linear) -> str:
    return f"{module.in_features}x{module.out_features}"


class HyperNetworks(torch.nn.Module):
    """The auxiliary networks of one model (one per distinct weight shape) and the per-module edit lrs."""

    def __init__(self, modules: Sequence[torch.nn.Linear], config: NetworkConfig, init_lr: float = 1e-4) -> None:
        super().__init__()
        self.config = config
        self.shapes = [shape_key(m) for m in modules]
        self.modes: list[int] = []
        counts: dict[str, int] = {}
        for key in self.shapes:
            self.modes.append(counts.get(key, 0))
            counts[key] = counts.get(key, 0) + 1
        self.networks = torch.nn.ModuleDict()
        for m, key in zip(modules, self.shapes, strict=True):
            if key not in self.networks:
                self.networks[key] = DafNetwork(m.in_features, m.out_features, config, counts[key])
        self.lrs = torch.nn.Parameter(torch.full((len(modules),), float(init_lr)))

    def network(self, i: int) -> DafNetwork:
        net = self.networks[self.shapes[i]]
        assert isinstance(net, DafNetwork)
        return net


def checkpoint_dir(root: str, model: str, editor: str) -> Path:
    return Path(root) / model / editor


def save_networks(
    folder: str | Path, nets: HyperNetworks, model: str, editor: str, modules: Sequence[str], info: dict[str, Any]
) -> None:
    from safetensors.torch import save_file

    from app.adapters.storage.folders import building

    with building(folder) as tmp:
        save_file({k: v.detach().contiguous() for k, v in nets.state_dict().items()}, str(tmp / WEIGHTS_FILE))
        config = {"editor": editor, "model": model, "modules": list(modules), "network": nets.config.to_dict(), **info}
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")


def load_networks(folder: str | Path, lm: Any, editor: str) -> tuple[HyperNetworks, list[str], dict[str, Any]]:
    """Raises ``EditorNotTrained`` when there is no checkpoint for this model and editor."""
    from safetensors.torch import load_file

    root = Path(folder)
    if not (root / CONFIG_FILE).is_file() or not (root / WEIGHTS_FILE).is_file():
        raise EditorNotTrained(
            f"{editor} has no trained checkpoint for {lm.name!r}: run `atelier edits train --editor {editor}` first."
        )
    config = json.loads((root / CONFIG_FILE).read_text(encoding="utf-8"))
    if config.get("model") != lm.name or config.get("editor") != editor:
        raise EditorNotTrained(
            f"The checkpoint in {root} is for {config.get('editor')!r} on {config.get('model')!r}: run "
            f"`atelier edits train --editor {editor}` for {lm.name!r}."
        )
    hooks_probe = DeltaHooks(lm.model, config["modules"])
    modules = hooks_probe.modules
    hooks_probe.remove()
    nets = HyperNetworks(modules, NetworkConfig(**config["network"]))
    try:
        nets.load_state_dict(load_file(str(root / WEIGHTS_FILE)))
    except (RuntimeError, OSError) as e:
        raise ModelUnavailable(f"The checkpoint in {root} does not fit {lm.name}: {e}") from e
    nets.eval().requires_grad_(False)
    return nets, list(config["modules"]), config


def fold(delta: torch.Tensor | None, decay: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """One step of the running delta: decay·ΔW + x₁ᵀx₂ (x₂ already scaled by the module's lr)."""
    term = x1.T @ x2
    return term if delta is None else decay * delta + term


class DafnetEditor(RecordedEditor, ModelEditor):
    """``name`` "dafnet", or "mend" for a checkpoint trained with ``inter_edit=False``."""

    def __init__(self, lm: Any, checkpoint: str | Path, name: str = "dafnet") -> None:
        super().__init__(lm)
        self.name = name
        self.nets, self.module_names, self.checkpoint_info = load_networks(checkpoint, lm, name)
        self.layer = ",".join(self.module_names)
        self.hooks = DeltaHooks(lm.model, self.module_names)
        self._pad = pad_id(lm.tokenizer)

    def unedited(self) -> AbstractContextManager[None]:
        """The model as the original inside (the deltas are off)."""
        return self.hooks.disabled()

    def apply(self, edit: EditSpec) -> None:
        encoded = encode(self.lm, edit.prompt, edit.target)
        with locked(self.lm), torch.no_grad():
            with self.hooks.disabled():
                signal = editing_signal(self.lm.model, self.hooks.modules, [encoded], self._pad)[0]
            record: dict[str, torch.Tensor] = {}
            for i, (u, d) in enumerate(signal):
                net = self.nets.network(i)
                x1, x2, reps, decay = net(torch.cat([u, d], -1), [u.shape[0]], self._banks(i, net), self.nets.modes[i])
                record[f"{i}.x1"] = x1
                record[f"{i}.x2"] = self.nets.lrs[i] * x2
                record[f"{i}.decay"] = decay.reshape(())
                record[f"{i}.reps"] = reps[:, 0]
            self._push(record)

    def close(self) -> None:
        """Detach from the model (its hooks are removed; the model answers as the original)."""
        self.hooks.remove()

    def settings(self) -> dict[str, Any]:
        return {"layer": self.layer, "checkpoint": self.checkpoint_info.get("trained_at", "")}

    def _banks(self, i: int, net: DafNetwork) -> list[torch.Tensor]:
        if not self.records:
            return net.empty_banks(self.hooks.modules[i].weight.device)
        return list(torch.stack([r[f"{i}.reps"] for r in self.records], 1))  # per layer: P × d

    def _reset(self) -> None:
        self.hooks.clear()

    def _replay(self, record: dict[str, torch.Tensor]) -> None:
        for i in range(len(self.hooks.modules)):
            self.hooks.deltas[i] = fold(
                self.hooks.deltas[i], record[f"{i}.decay"], record[f"{i}.x1"], record[f"{i}.x2"]
            )
