"""Synthetic mixtures of LDSs with known parameters, and the errors of a fit against them.

The two settings of the MoLDS paper (Gong and Saxena, ICLR 2026) are ``SETTINGS["small"]``
(K = 3, n = 2, m = p = 1) and ``SETTINGS["large"]`` (K = 6, n = 3, m = p = 2, D = 0).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from .lds import LinearDynamicalSystem

SETTINGS = {
    "small": dict(n_components=3, state_dim=2, input_dim=1, output_dim=1, direct_term=True),
    "large": dict(n_components=6, state_dim=3, input_dim=2, output_dim=2, direct_term=False),
}


def random_lds(state_dim, input_dim, output_dim, rng, noise=0.1, direct_term=True, radius=(0.5, 0.9)):
    """A stable LDS: ``A`` Gaussian rescaled to a spectral radius drawn from ``radius``, ``B``, ``C``
    (and ``D`` unless ``direct_term`` is False) standard normal, then ``C`` and ``D`` scaled so that the
    impulse response has unit energy (every system is equally visible in the outputs, and ``noise``
    is a noise-to-signal ratio); ``Q = R = noise^2 I``, ``x_0 = 0``."""
    n, m, p = state_dim, input_dim, output_dim
    A = rng.standard_normal((n, n))
    A *= rng.uniform(*radius) / np.abs(np.linalg.eigvals(A)).max()
    D = rng.standard_normal((p, m)) if direct_term else np.zeros((p, m))
    lds = LinearDynamicalSystem(
        A, rng.standard_normal((n, m)), rng.standard_normal((p, n)), D,
        noise**2 * np.eye(n), noise**2 * np.eye(p), np.zeros(n), 1e-6 * np.eye(n),
    )  # fmt: skip
    energy = np.linalg.norm(lds.markov_parameters(100))
    lds.C, lds.D = lds.C / energy, lds.D / energy
    return lds


def random_mixture(
    setting: str = "small", rng=None, noise: float = 0.1, min_weight: float = 0.1, min_gap: float = 0.05
):
    """Weights (K,) and systems of one of :data:`SETTINGS`.

    Weights come from a flat Dirichlet, redrawn until each is at least ``min_weight``; systems are
    redrawn until they are distinguishable: the K-th eigenvalue of ``sum_k p_k g_k g_k^T`` (``g_k``
    the flattened unit-energy impulse responses over ``2 n + 2`` lags) is at least ``min_gap``.
    Independent draws are sometimes nearly collinear (two systems with almost the same impulse
    response), which no method can tell apart from few trials, and which makes the tensor
    method's whitening divide by a near-zero eigenvalue.
    """
    rng = np.random.default_rng(rng)
    cfg = dict(SETTINGS[setting])
    K = cfg.pop("n_components")
    while True:
        weights = rng.dirichlet(np.ones(K))
        if weights.min() >= min_weight:
            break
    lags = 2 * cfg["state_dim"] + 2
    while True:
        systems = [
            random_lds(cfg["state_dim"], cfg["input_dim"], cfg["output_dim"], rng, noise, cfg["direct_term"])
            for _ in range(K)
        ]
        g = np.stack([s.markov_parameters(lags).ravel() for s in systems])
        if np.linalg.eigvalsh((g.T * weights) @ g)[::-1][K - 1] >= min_gap:
            return weights, systems


def sample_trials(weights, systems, n_trials: int, length: int, rng=None):
    """White Gaussian inputs and each trial's outputs: lists of (length, m) and (length, p) arrays,
    and the true labels (n_trials,)."""
    rng = np.random.default_rng(rng)
    labels = rng.choice(len(weights), size=n_trials, p=weights)
    inputs = rng.standard_normal((n_trials, length, systems[0].input_dim))
    outputs = np.empty((n_trials, length, systems[0].output_dim))
    for k, lds in enumerate(systems):
        mine = labels == k
        outputs[mine] = lds.simulate(inputs[mine], rng)[1]
    return list(inputs), list(outputs), labels


def markov_errors(true_markov: np.ndarray, est_markov: np.ndarray) -> np.ndarray:
    """(K, K) relative errors ``|G_k - Ĝ_j|_F / |G_k|_F`` of (K, L, p, m) Markov parameters."""
    diff = true_markov[:, None] - est_markov[None]
    return (
        np.linalg.norm(diff.reshape(*diff.shape[:2], -1), axis=2)
        / np.linalg.norm(true_markov.reshape(len(true_markov), -1), axis=1)[:, None]
    )


def match_components(true_markov: np.ndarray, est_markov: np.ndarray) -> np.ndarray:
    """The estimated component matched to each true one (Hungarian matching on Markov errors)."""
    rows, cols = linear_sum_assignment(markov_errors(true_markov, est_markov))
    return cols[np.argsort(rows)]


def recovery_errors(true_weights, true_markov, est_weights, est_markov) -> dict:
    """After matching: mean relative Markov-parameter error, and the largest weight error."""
    match = match_components(true_markov, est_markov)
    errs = markov_errors(true_markov, est_markov)[np.arange(len(match)), match]
    return {
        "markov_error": float(errs.mean()),
        "weight_error": float(np.abs(np.asarray(true_weights) - np.asarray(est_weights)[match]).max()),
        "match": match,
    }


def clustering_accuracy(true_labels, labels) -> float:
    """Fraction of trials whose cluster is their true system's, under the best one-to-one matching."""
    K = max(int(np.max(true_labels)), int(np.max(labels))) + 1
    confusion = np.zeros((K, K))
    np.add.at(confusion, (true_labels, labels), 1)
    rows, cols = linear_sum_assignment(-confusion)
    return float(confusion[rows, cols].sum() / len(labels))
