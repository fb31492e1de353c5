"""GECE (Li et al., ACL 2024): the long-tail score of a QA instance, as arithmetic on plain numbers.

    GECE = |M(pred, ref) - (1/n) sum_i P(t_i)| / (alpha * E(grad) . grad_ins)

- ``M``: METEOR of the model's answer against the reference (``app.domain.meteor``);
- ``(1/n) sum P(t_i)``: mean probability of the answer's n generated tokens;
- ``alpha``: mean word frequency of the instance (Zipf scale, so rare words give a small alpha);
- ``E(grad) . grad_ins``: alignment of the instance's NLL gradient with the mean gradient of the
  calibration set.

A large GECE means long-tail: the model is miscalibrated on the instance (confidence far from
correctness), its words are rare and its gradient points away from the dataset's.

Choices the summaries of the paper leave open, and ours:
- The operator is a division (a calibration *error* must grow when alpha and alignment shrink).
- Alignment is the cosine, not the raw dot product: the dot product is dominated by the gradient's
  norm, and the cosine separates long-tail instances better (docs/knowledge.md). The raw dot product
  stays available (``alignment="dot"`` in calibration) to compare the two.
- The denominator must be positive: alignment is floored at ``ALIGNMENT_FLOOR`` (a gradient at right
  angles to, or against, the dataset's mean counts as maximally unfamiliar) and alpha at
  ``ALPHA_FLOOR`` (a word never seen has Zipf frequency 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

ALIGNMENT_FLOOR = 0.05
ALPHA_FLOOR = 0.5


def gece(meteor: float, mean_token_prob: float, alpha: float, alignment: float) -> float:
    if not (0.0 <= meteor <= 1.0 and 0.0 <= mean_token_prob <= 1.0):
        raise ValueError("METEOR and the mean token probability must lie in [0, 1].")
    return abs(meteor - mean_token_prob) / (max(alpha, ALPHA_FLOOR) * max(alignment, ALIGNMENT_FLOOR))


def dot(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) != len(b):
        raise ValueError(f"Vectors of different lengths: {len(a)} and {len(b)}.")
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    na, nb = math.sqrt(dot(a, a)), math.sqrt(dot(b, b))
    return dot(a, b) / (na * nb) if na > 0 and nb > 0 else 0.0


def mean_vector(vectors: Sequence[Sequence[float]]) -> list[float]:
    if not vectors:
        raise ValueError("The mean of no vectors.")
    n = len(vectors)
    return [math.fsum(column) / n for column in zip(*vectors, strict=True)]


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve of ``scores`` for the positive ``labels`` (ties count one half)."""
    pairs = sorted(zip(scores, labels, strict=True), key=lambda p: p[0])
    positives = sum(1 for _, y in pairs if y)
    negatives = len(pairs) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    # Mann-Whitney U with midranks.
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        midrank = (i + 1 + j) / 2
        rank_sum += midrank * sum(1 for _, y in pairs[i:j] if y)
        i = j
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def quantile_threshold(scores: Sequence[float], rate: float) -> float:
    """The score above which a share ``rate`` of ``scores`` lies (the gate's retrieval rate on them)."""
    if not scores:
        raise ValueError("No scores.")
    if not 0.0 <= rate <= 1.0:
        raise ValueError("rate must lie in [0, 1].")
    ordered = sorted(scores)
    if rate >= 1.0:
        return ordered[0] - 1e-12
    index = max(0, math.ceil((1.0 - rate) * len(ordered)) - 1)
    return ordered[index]
