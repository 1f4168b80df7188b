"""Matching neurons across animals by the distributions of their individual latents (EIT's test
of what the individual module learned: a neuron's latents describe its dynamics, not its identity)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from ...core.spikes import single_segment_tokens


def neuron_alignment(model, source, target, num_samples: int = 256, seed: int = 0) -> np.ndarray:
    """Wasserstein-2 distances between every source neuron's and every target neuron's latents.

    Each neuron's distribution is its individual latent (at the window's last bin) in
    ``num_samples`` windows drawn at random times of its own recording. With as many samples on
    both sides, the optimal transport plan is a one-to-one matching, so the distance is exact
    (an assignment problem on squared Euclidean costs, solved by
    :func:`scipy.optimize.linear_sum_assignment`), with no entropic smoothing.

    Parameters
    ----------
    model : EITDecoder
        A fitted EIT (its individual module is used; it runs on any neurons).
    source, target : BaseSorting or SpikeTokens
        Two recordings (one segment each), for example two animals.
    num_samples : int, default: 256
        Windows per neuron; the cost grows as its cube.
    seed : int, default: 0
        Seed of the window times.

    Returns
    -------
    distances : (U_source, U_target) ndarray
        ``distances[i, j]`` between source unit ``i`` and target unit ``j`` (in the sortings'
        unit order). ``scipy.optimize.linear_sum_assignment(distances)`` matches the neurons.
    """
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2, got {num_samples}.")
    # the same draw of times on both sides: a recording against itself costs nothing
    source_latents, target_latents = (_last_bin_latents(model, s, num_samples, seed) for s in (source, target))
    distances = np.empty((len(source_latents), len(target_latents)))
    for i, a in enumerate(source_latents):
        for j, b in enumerate(target_latents):
            cost = cdist(a, b, "sqeuclidean")
            rows, cols = linear_sum_assignment(cost)
            distances[i, j] = np.sqrt(cost[rows, cols].mean())
    return distances


def _last_bin_latents(model, sorting, num_samples: int, seed: int) -> np.ndarray:
    """(U, num_samples, dim) latents of each unit at the last bin of windows at random times."""
    tokens = single_segment_tokens(sorting)
    start = tokens.start_time + model.window_length
    if tokens.end_time <= start:
        raise ValueError(
            f"The recording spans {tokens.end_time - tokens.start_time:.3g} s, shorter than one window "
            f"({model.window_length:g} s); the individual latents need at least one whole window."
        )
    times = np.sort(np.random.default_rng(seed).uniform(start, tokens.end_time, num_samples))
    latents, _ = model.individual_latents(tokens, times)
    return latents[:, :, model.num_lags - 1].transpose(1, 0, 2)
