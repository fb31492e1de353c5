"""An edit as the model sees it: the prompt and target token ids, batched with right padding.

Edits are encoded the way the model is asked (``TransformersLanguageModel.encode_answer``: the chat
template with the system prompt when the tokenizer has one, and the end-of-turn token after the target),
so an edit changes the answers ``atelier ask`` gives, and the scores measure exactly that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from app.domain.errors import InvalidParameters


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
    """The tokenizer's padding token, else its end-of-sequence token, else 0 (padded positions are masked)."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0
