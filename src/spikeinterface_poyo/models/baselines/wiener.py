"""The Wiener filter: causal ridge regression on binned spike-count history (with optional look-ahead)."""

from __future__ import annotations

import numpy as np

from ...core.binning import binned_history
from ...core.metrics import r2_per_dimension
from ...core.readout import ridge_solve, with_intercept
from .common import BaselineDecoder, validation_cut


class WienerFilter(BaselineDecoder):
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
    session_id : str, default: "session"
        Name of the session it is fitted on.
    leads : int, default: 0
        Bins after the decoded time added to the features (look-ahead, for offline comparisons
        with a centred decoder); 0 keeps the filter causal.

    Attributes
    ----------
    alpha_ : float
        The chosen penalty.
    coef_ : np.ndarray
        ((lags + leads) * U + 1, D) weights on the standardised counts (and the intercept, last).
    """

    family = "wiener"

    def __init__(
        self,
        bin_size=0.05,
        lags=5,
        alphas=(0.1, 1.0, 10.0, 100.0, 1000.0, 1e4),
        val_fraction=0.1,
        session_id="session",
        leads=0,
    ):
        self.bin_size, self.lags, self.alphas, self.val_fraction = bin_size, lags, tuple(alphas), val_fraction
        self.session_id, self.leads = session_id, leads

    def _design(self, tokens, timestamps) -> np.ndarray:
        x = binned_history(tokens, timestamps, self.bin_size, self.lags, self.leads)
        x = (x - self.mean_) / self.scale_
        return with_intercept(x)

    def _fit_arrays(self, tokens, t, y) -> None:
        raw = binned_history(tokens, t, self.bin_size, self.lags, self.leads)
        self.mean_, self.scale_ = raw.mean(axis=0), raw.std(axis=0) + 1e-6
        x = with_intercept((raw - self.mean_) / self.scale_)
        cut = validation_cut(len(x), self.val_fraction)
        scores = [
            np.nanmean(r2_per_dimension(y[cut:], x[cut:] @ ridge_solve(x[:cut], y[:cut], alpha)))
            for alpha in self.alphas
        ]
        self.alpha_ = self.alphas[int(np.nanargmax(scores))]
        self.coef_ = ridge_solve(x, y, self.alpha_)

    def _predict_arrays(self, tokens, timestamps) -> np.ndarray:
        return self._design(tokens, timestamps) @ self.coef_

    def _fitted_arrays(self) -> dict:
        return {"mean": self.mean_, "scale": self.scale_, "coef": self.coef_, "alpha": np.array([self.alpha_])}

    def _restore_arrays(self, arrays: dict) -> None:
        self.mean_, self.scale_, self.coef_ = arrays["mean"], arrays["scale"], arrays["coef"]
        self.alpha_ = float(arrays["alpha"][0])
