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


def poisson_log_likelihood(counts: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Poisson log-likelihood of each count under its expected count, without the ``log k!`` term
    (it cancels in every comparison of two models on the same counts)."""
    rates = np.maximum(np.asarray(rates, dtype=np.float64), 1e-12)
    return np.asarray(counts, dtype=np.float64) * np.log(rates) - rates


def bits_per_spike(counts, rates, null_rates=None) -> dict:
    """Bits per spike of predicted rates against a per-neuron mean-rate Poisson null.

    The gain in Poisson log-likelihood over the null, in bits, divided by the number of spikes:
    0 for the null itself, positive when the prediction explains the counts better. Reported
    per neuron then averaged (as MtM reports it) and pooled over neurons (as the Neural Latents
    Benchmark does). Neurons without a spike in ``counts`` have no bits per spike; they are left
    out of the average and counted.

    Parameters
    ----------
    counts : array_like
        (..., N) spike counts (bins, or trials and bins, by N neurons).
    rates : array_like
        Predicted expected counts per bin, the same shape (not Hz: rate times bin width).
    null_rates : array_like or None
        (N,) expected count per bin of the null; by default each neuron's mean count in ``counts``.

    Returns
    -------
    dict
        ``per_neuron`` ((N,) array, NaN for silent neurons), ``mean`` (average over neurons that
        fire), ``pooled`` (over all spikes) and ``n_excluded`` (silent neurons).
    """
    counts = np.asarray(counts, dtype=np.float64)
    rates = np.asarray(rates, dtype=np.float64)
    if counts.shape != rates.shape:
        raise ValueError(f"counts and rates must have the same shape, got {counts.shape} and {rates.shape}.")
    if np.any(counts < 0) or np.any(rates < 0) or not np.all(np.isfinite(rates)):
        raise ValueError("counts and rates must be non-negative, and rates finite (expected counts per bin).")
    num_neurons = counts.shape[-1]
    k, lam = counts.reshape(-1, num_neurons), rates.reshape(-1, num_neurons)
    null = k.mean(axis=0) if null_rates is None else np.asarray(null_rates, dtype=np.float64)
    if null.shape != (num_neurons,):
        raise ValueError(f"null_rates needs one expected count per neuron ({num_neurons}), got shape {null.shape}.")
    gain = (poisson_log_likelihood(k, lam) - poisson_log_likelihood(k, np.broadcast_to(null, k.shape))).sum(axis=0)
    spikes = k.sum(axis=0)
    firing = spikes > 0
    per_neuron = np.full(num_neurons, np.nan)
    per_neuron[firing] = gain[firing] / (spikes[firing] * np.log(2))
    total = spikes.sum()
    return {
        "per_neuron": per_neuron,
        "mean": float(np.mean(per_neuron[firing])) if firing.any() else float("nan"),
        "pooled": float(gain.sum() / (total * np.log(2))) if total > 0 else float("nan"),
        "n_excluded": int((~firing).sum()),
    }
