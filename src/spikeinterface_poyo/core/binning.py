"""Spike counts in bins around given times, with lags (history) and leads (look-ahead): the one
binning that the baselines and every binned model share."""

from __future__ import annotations

import numpy as np

from .spikes import single_segment_tokens


def binned_counts(sorting, timestamps, bin_size: float = 0.05, lags: int = 5, leads: int = 0) -> np.ndarray:
    """Counts of every unit in ``lags`` bins ending at each timestamp and ``leads`` bins after it.

    Bins are half-open on the left: with ``leads=0`` the last bin is ``(t - bin_size, t]``, so
    only spikes up to ``t`` are used (causal). Bin ``i`` covers
    ``(t + (i - lags) * bin_size, t + (i - lags + 1) * bin_size]``.

    Parameters
    ----------
    sorting : BaseSorting, SortingAnalyzer or SpikeTokens
        The spikes (a single segment).
    timestamps : array_like
        (T,) times in seconds.
    bin_size : float, default: 0.05
        Bin width in seconds.
    lags : int, default: 5
        Bins up to and including the one ending at ``t``.
    leads : int, default: 0
        Bins after ``t`` (look-ahead; 0 keeps the features causal).

    Returns
    -------
    np.ndarray
        (T, lags + leads, U) float32 counts, oldest bin first.
    """
    if bin_size <= 0:
        raise ValueError(f"bin_size must be positive, got {bin_size}.")
    if lags < 0 or leads < 0 or lags + leads == 0:
        raise ValueError(f"Need lags >= 0, leads >= 0 and at least one bin, got lags={lags}, leads={leads}.")
    tokens = single_segment_tokens(sorting)
    timestamps = np.asarray(timestamps, dtype=np.float64)
    num_bins = lags + leads
    counts = np.zeros((len(timestamps), num_bins, tokens.num_units), dtype=np.float32)
    # every bin edge of every timestamp at once, oldest first
    edges = timestamps[:, None] + (np.arange(num_bins + 1) - lags)[None, :] * bin_size
    order = np.argsort(tokens.unit_index, kind="stable")  # spike times grouped by unit, each group still sorted
    bounds = np.searchsorted(tokens.unit_index[order], np.arange(tokens.num_units + 1))
    for u in range(tokens.num_units):
        times = tokens.times[order[bounds[u] : bounds[u + 1]]]
        if len(times):
            cumulative = np.searchsorted(times, edges, side="right")  # spikes up to each edge
            counts[:, :, u] = cumulative[:, 1:] - cumulative[:, :-1]
    return counts


def binned_history(sorting, timestamps, bin_size: float = 0.05, lags: int = 5, leads: int = 0) -> np.ndarray:
    """Counts flattened lag-major: (T, (lags + leads) * U). The history comes first, most recent
    bin first: column ``k * U + u`` (``k < lags``) is unit ``u`` in the bin
    ``(t - (k + 1) * bin_size, t - k * bin_size]``. The ``leads`` bins after ``t`` follow, nearest
    first: column ``(lags + j) * U + u`` is unit ``u`` in ``(t + j * bin_size, t + (j + 1) * bin_size]``.
    With ``leads=0`` (the default) the features are causal."""
    counts = binned_counts(sorting, timestamps, bin_size, lags, leads)
    ordered = np.concatenate([counts[:, :lags][:, ::-1], counts[:, lags:]], axis=1)
    return np.ascontiguousarray(ordered).reshape(len(counts), -1)


def count_matrix(times: np.ndarray, units: np.ndarray, num_units: int, start: float, bin_size: float, num_bins: int):
    """(num_bins, num_units) float32 counts in bins ``[start + k bin_size, start + (k + 1) bin_size)``."""
    k = np.floor((times - start) / bin_size + 1e-9).astype(np.int64)  # a spike on an edge opens the next bin
    keep = (k >= 0) & (k < num_bins)
    flat = np.bincount(k[keep] * num_units + units[keep], minlength=num_bins * num_units)
    return flat.reshape(num_bins, num_units).astype(np.float32)
