"""SimSort on the traces of one tetrode: detect, cut snippets, denoise, embed, reduce, cluster."""

from __future__ import annotations

import numpy as np

from .clustering import cluster_features, drop_small_clusters, reduce_embeddings
from .detector import events_from_probability
from .embedder import denoise_snippets, embed, extract_snippets, snippet_samples
from .training import spike_probability

#: The sorter's parameters and their defaults (SpikeInterface's ``_default_params``); None
#: takes the value chosen on validation simulations when the weights were trained.
DEFAULT_PARAMS = dict(
    detection="learned",
    probability_threshold=None,
    detect_threshold=5.0,
    exclude_sweep_ms=0.5,
    denoise_rank=5,
    reducer="pca",
    n_components=5,
    clusterer="mean_shift",
    n_clusters=None,
    bandwidth_quantile=None,
    min_cluster_size=20,
    seed=0,
)


def threshold_events(traces: np.ndarray, detect_threshold: float, exclude_samples: int) -> np.ndarray:
    """The fallback detector: samples where some channel's z-scored trace goes below
    ``-detect_threshold`` robust standard deviations (median absolute deviation), one event per
    excursion at its largest deflection."""
    mad = np.median(np.abs(traces - np.median(traces, axis=0)), axis=0) / 0.6745
    crossing = (traces < -detect_threshold * np.maximum(mad, 1e-12)).any(axis=1)
    return events_from_probability(crossing.astype(np.float32), traces, 0.5, exclude_samples)


def sort_tetrode(traces: np.ndarray, sampling_frequency: float, detector, embedder, params: dict,
                 progress_bar: bool = False) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Spike samples and unit labels of one tetrode's preprocessed (T, 4) ``traces``.

    Returns
    -------
    samples : np.ndarray
        (K,) sample of each sorted spike, sorted.
    labels : np.ndarray
        (K,) its unit, 0, 1, ... (spikes of clusters smaller than ``min_cluster_size`` are dropped).
    """
    p = {**DEFAULT_PARAMS, **params}
    missing = [k for k in ("probability_threshold", "bandwidth_quantile") if p[k] is None]
    if missing:
        raise ValueError(f"Give {missing}: the sorter fills them from its weights' validated choice.")
    exclude = int(round(p["exclude_sweep_ms"] * 1e-3 * sampling_frequency))
    if p["detection"] == "learned":
        probability = spike_probability(detector, traces, progress_bar=progress_bar)
        peaks = events_from_probability(probability, traces, p["probability_threshold"], exclude)
    elif p["detection"] == "threshold":
        peaks = threshold_events(traces, p["detect_threshold"], exclude)
    else:
        raise ValueError(f"detection must be 'learned' or 'threshold', got {p['detection']!r}.")
    if len(peaks) < max(p["min_cluster_size"], 2):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    before, after = snippet_samples(sampling_frequency)
    snippets = denoise_snippets(extract_snippets(traces, peaks, before, after), p["denoise_rank"])
    features = reduce_embeddings(embed(embedder, snippets), p["reducer"], p["n_components"], p["seed"])
    labels = cluster_features(features, p["clusterer"], p["n_clusters"], p["bandwidth_quantile"], p["seed"])
    labels = drop_small_clusters(labels, p["min_cluster_size"])
    keep = labels >= 0
    return peaks[keep], labels[keep]
