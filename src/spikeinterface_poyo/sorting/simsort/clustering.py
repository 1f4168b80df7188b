"""From embeddings to units: a reduction to a few dimensions (PCA, or UMAP when it is
installed), then clustering (MeanShift, which finds the number of units itself, as the
reference does; KMeans or a Gaussian mixture when the number is known)."""

from __future__ import annotations

import numpy as np

REDUCERS = ("pca", "umap")
CLUSTERERS = ("mean_shift", "kmeans", "gmm")


def _sklearn():
    try:
        import sklearn
    except ImportError:
        raise ImportError(
            "SimSort's reduction and clustering need scikit-learn: pip install 'spikeinterface-poyo[simsort]'."
        ) from None
    return sklearn


def reduce_embeddings(embeddings: np.ndarray, method: str = "pca", n_components: int = 5, seed: int = 0) -> np.ndarray:
    """(N, n_components) coordinates of (N, E) embeddings."""
    if method not in REDUCERS:
        raise ValueError(f"Unknown reducer {method!r}; choose one of {REDUCERS}.")
    n_components = min(n_components, embeddings.shape[1], max(len(embeddings) - 1, 1))
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise ImportError(
                "reducer='umap' needs the umap-learn package: pip install umap-learn (or use reducer='pca')."
            ) from None
        return umap.UMAP(n_components=n_components, random_state=seed).fit_transform(embeddings)
    _sklearn()
    from sklearn.decomposition import PCA

    return PCA(n_components=n_components, random_state=seed).fit_transform(embeddings)


def cluster_features(features: np.ndarray, method: str = "mean_shift", n_clusters: int | None = None,
                     bandwidth_quantile: float = 0.2, seed: int = 0) -> np.ndarray:  # fmt: skip
    """(N,) cluster label of each row of ``features`` (0, 1, ...).

    ``mean_shift`` estimates its bandwidth as the ``bandwidth_quantile`` quantile of pairwise
    distances; ``kmeans`` and ``gmm`` need ``n_clusters``.
    """
    if method not in CLUSTERERS:
        raise ValueError(f"Unknown clusterer {method!r}; choose one of {CLUSTERERS}.")
    if len(features) < 2:
        return np.zeros(len(features), dtype=np.int64)
    _sklearn()
    if method == "mean_shift":
        from sklearn.cluster import MeanShift, estimate_bandwidth

        bandwidth = estimate_bandwidth(features, quantile=bandwidth_quantile, n_samples=2000, random_state=seed)
        return MeanShift(bandwidth=max(bandwidth, 1e-6), bin_seeding=True, cluster_all=True).fit_predict(features)
    if n_clusters is None or n_clusters < 1:
        raise ValueError(f"clusterer={method!r} needs n_clusters (a positive number of units), got {n_clusters}.")
    n_clusters = min(n_clusters, len(features))
    if method == "kmeans":
        from sklearn.cluster import KMeans

        return KMeans(n_clusters, n_init=10, random_state=seed).fit_predict(features)
    from sklearn.mixture import GaussianMixture

    return GaussianMixture(n_clusters, n_init=3, random_state=seed).fit_predict(features)


def drop_small_clusters(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Labels with clusters of fewer than ``min_size`` spikes set to -1 (noise), the rest renumbered 0, 1, ..."""
    labels = np.asarray(labels)
    names, counts = np.unique(labels, return_counts=True)
    kept = names[counts >= min_size]
    out = np.full(len(labels), -1, dtype=np.int64)
    for new, old in enumerate(kept):
        out[labels == old] = new
    return out
