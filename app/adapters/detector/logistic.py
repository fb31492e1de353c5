"""Logistic regression (numpy) from query-time signals to P(long-tail).

Features are standardised with the calibration set's mean and deviation; the weights are fitted by
Newton's method (IRLS) on the L2-penalised log-likelihood, which converges in a few steps on a few
hundred instances and is deterministic. Classes are weighted to balance them, so a calibration set
with few long-tail instances still yields probabilities around 0.5 at the boundary. The parameters
are plain lists, stored with the calibration.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.domain.errors import InvalidParameters
from app.ports.knowledge import DetectorFit, LongTailDetector


class LogisticLongTailDetector(LongTailDetector):
    def __init__(self, l2: float = 1.0, iterations: int = 50) -> None:
        self.l2 = l2
        self.iterations = iterations

    def fit(self, rows: Sequence[dict[str, float]], labels: Sequence[bool], features: Sequence[str]) -> DetectorFit:
        if len(rows) != len(labels) or not rows:
            raise InvalidParameters("The detector needs as many labels as rows, and at least one.")
        names = list(features)
        x = np.array([[float(row[f]) for f in names] for row in rows], dtype=np.float64)
        y = np.array([1.0 if label else 0.0 for label in labels])
        mean, std = x.mean(axis=0), x.std(axis=0)
        std[std < 1e-12] = 1.0
        z = np.hstack([np.ones((len(x), 1)), (x - mean) / std])
        positives = y.sum()
        negatives = len(y) - positives
        if positives == 0 or negatives == 0:
            sample_weight = np.ones_like(y)
        else:
            sample_weight = np.where(y > 0, len(y) / (2 * positives), len(y) / (2 * negatives))
        w = np.zeros(z.shape[1])
        penalty = np.full(z.shape[1], self.l2)
        penalty[0] = 0.0  # the intercept is not shrunk
        for _ in range(self.iterations):
            p = 1.0 / (1.0 + np.exp(-(z @ w)))
            gradient = z.T @ (sample_weight * (p - y)) + penalty * w
            hessian = (z * (sample_weight * p * (1 - p))[:, None]).T @ z + np.diag(penalty) + 1e-9 * np.eye(len(w))
            step = np.linalg.solve(hessian, gradient)
            w -= step
            if np.abs(step).max() < 1e-10:
                break
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        eps = 1e-12
        log_loss = float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
        params: dict[str, object] = {
            "kind": "logistic",
            "intercept": float(w[0]),
            "weights": [float(v) for v in w[1:]],
            "mean": [float(v) for v in mean],
            "std": [float(v) for v in std],
        }
        return DetectorFit(params, names, {"detector_log_loss": log_loss})

    def probability(self, fit: DetectorFit, row: dict[str, float]) -> float:
        params = fit.params
        weights, mean, std = (np.asarray(params[k], dtype=np.float64) for k in ("weights", "mean", "std"))
        intercept = params["intercept"]
        if not isinstance(intercept, int | float):
            raise InvalidParameters("The detector's parameters are damaged; calibrate again.")
        missing = [f for f in fit.features if f not in row]
        if missing:
            raise InvalidParameters(f"The detector needs the signal(s) {missing}.")
        x = np.array([float(row[f]) for f in fit.features])
        logit = float(intercept) + float(((x - mean) / std) @ weights)
        return float(1.0 / (1.0 + np.exp(-logit)))
