"""Teacher-forced predictions on edit targets and their token accuracy: what the edit scores count as an
edit taking hold (the model, fed the true prefix, predicts each target token)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from app.adapters.editing.encoding import Encoded, pad


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
