"""Baseline decoders on binned spike counts, scored the same way as POYO.

``WienerFilter`` is the classic causal linear decoder of BCI work: ridge regression
from the counts of the current and previous bins to the behaviour.
"""

from __future__ import annotations

import numpy as np

from .behavior import Behavior
from .tokens import sorting_to_tokens


def binned_history(sorting, timestamps: np.ndarray, bin_size: float = 0.05, lags: int = 5) -> np.ndarray:
    """Spike counts in the ``lags`` bins ending at each timestamp, (T, lags * U).

    Bin ``k`` (0 = most recent) covers ``(t - (k + 1) * bin_size, t - k * bin_size]``,
    so features only use spikes up to ``t`` (causal).
    """
    (tokens,) = sorting_to_tokens(sorting)[:1]
    timestamps = np.asarray(timestamps, dtype=np.float64)
    features = np.zeros((len(timestamps), lags, tokens.num_units), dtype=np.float32)
    # spikes per unit up to each edge, by searchsorted on each unit's sorted times
    for u in range(tokens.num_units):
        times = tokens.times[tokens.unit_index == u]
        for k in range(lags):
            hi = np.searchsorted(times, timestamps - k * bin_size, side="right")
            lo = np.searchsorted(times, timestamps - (k + 1) * bin_size, side="right")
            features[:, k, u] = hi - lo
    return features.reshape(len(timestamps), -1)


class WienerFilter:
    """Causal linear decoder: ridge regression on binned spike-count history.

    Parameters
    ----------
    bin_size : float, default: 0.05
        Bin width in seconds.
    lags : int, default: 5
        Number of bins of history (the current bin included).
    alphas : sequence of float
        Ridge penalties tried; the one with the best R² on the last ``val_fraction`` of
        the training data is kept, then the model is refitted on all of it.
    val_fraction : float, default: 0.1
        Held-out part of the training data used to choose the penalty.
    """

    def __init__(self, bin_size=0.05, lags=5, alphas=(0.1, 1.0, 10.0, 100.0, 1000.0, 1e4), val_fraction=0.1):
        self.bin_size, self.lags, self.alphas, self.val_fraction = bin_size, lags, tuple(alphas), val_fraction

    @staticmethod
    def _solve(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
        gram = x.T @ x + alpha * np.eye(x.shape[1])
        gram[-1, -1] -= alpha  # no penalty on the intercept column
        return np.linalg.solve(gram, x.T @ y)

    def _design(self, sorting, timestamps) -> np.ndarray:
        x = binned_history(sorting, timestamps, self.bin_size, self.lags)
        x = (x - self.mean_) / self.scale_
        return np.hstack([x, np.ones((len(x), 1))])

    def fit(self, sorting, behavior: Behavior) -> WienerFilter:
        """Fit on the valid samples of ``behavior``."""
        keep = behavior.valid
        t, y = behavior.timestamps[keep], behavior.values[keep]
        raw = binned_history(sorting, t, self.bin_size, self.lags)
        self.mean_, self.scale_ = raw.mean(axis=0), raw.std(axis=0) + 1e-6
        x = np.hstack([(raw - self.mean_) / self.scale_, np.ones((len(raw), 1))])
        cut = int(len(x) * (1 - self.val_fraction))
        scores = []
        for alpha in self.alphas:
            w = self._solve(x[:cut], y[:cut], alpha)
            residual = ((y[cut:] - x[cut:] @ w) ** 2).sum(axis=0)
            total = ((y[cut:] - y[cut:].mean(axis=0)) ** 2).sum(axis=0)
            scores.append(np.mean(1 - residual / total))
        self.alpha_ = self.alphas[int(np.argmax(scores))]
        self.coef_ = self._solve(x, y, self.alpha_)
        self.behavior_ = behavior
        return self

    def predict(self, sorting, timestamps) -> Behavior:
        """Decode at ``timestamps`` (seconds)."""
        timestamps = np.asarray(timestamps, dtype=np.float64)
        b = self.behavior_
        values = self._design(sorting, timestamps) @ self.coef_
        return Behavior(timestamps, values, f"decoded_{b.name}", b.unit, b.dimension_names)
