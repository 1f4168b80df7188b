"""Scoring decoded behaviour: the package's one coefficient of determination."""

from __future__ import annotations

import numpy as np


def _as_array(x) -> np.ndarray:
    values = getattr(x, "values", x)  # a Behavior, or a plain array
    values = np.asarray(values, dtype=np.float64)
    return values[:, None] if values.ndim == 1 else values


def r2_per_dimension(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(D,) R² of (T, D) predictions ``p`` against ``y``; NaN for a constant dimension."""
    residual = ((y - p) ** 2).sum(axis=0)
    total = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    return 1.0 - residual / np.where(total > 0, total, np.nan)


def r2_score(true, pred) -> dict:
    """Coefficient of determination per dimension and averaged.

    Samples where either array has a NaN are left out (and counted).

    Parameters
    ----------
    true, pred : Behavior or array_like
        (T, D) or (T,) arrays, or :class:`Behavior` objects at the same timestamps.

    Returns
    -------
    dict
        ``r2`` (list, one per dimension), ``mean`` (float) and ``n_excluded`` (int).
    """
    y, p = _as_array(true), _as_array(pred)
    if y.shape != p.shape:
        raise ValueError(f"true and pred must have the same shape, got {y.shape} and {p.shape}.")
    if hasattr(true, "timestamps") and hasattr(pred, "timestamps"):
        if not np.allclose(true.timestamps, pred.timestamps):
            raise ValueError("true and pred are sampled at different timestamps; decode at true.timestamps.")
    keep = np.all(np.isfinite(y), axis=1) & np.all(np.isfinite(p), axis=1)
    if keep.sum() < 2:
        raise ValueError("Fewer than two samples where both series are finite; nothing to score.")
    r2 = r2_per_dimension(y[keep], p[keep])
    return {"r2": r2.tolist(), "mean": float(np.nanmean(r2)), "n_excluded": int((~keep).sum())}
