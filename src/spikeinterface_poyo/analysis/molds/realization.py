"""Ho-Kalman realisation: a state-space system ``(A, B, C, D)`` from its Markov parameters."""

from __future__ import annotations

import numpy as np


def ho_kalman(markov: np.ndarray, state_dim: int, rows: int | None = None):
    """Realise ``(A, B, C, D)`` of order ``state_dim`` from Markov parameters.

    Parameters
    ----------
    markov : ndarray, shape (L, p, m)
        ``G_0 = D, G_1 = C B, G_2 = C A B, ...`` (see :mod:`.lds` for the timing convention).
    state_dim : int
        The order ``n``; the Hankel matrix of ``G_1 .. G_{L-1}`` must have rank at least ``n``.
    rows : int or None, default: None
        Block rows of the Hankel matrix; by default half of the ``L - 1`` parameters after ``D``,
        rounded up (the rest are the columns plus the one-step shift).

    Returns
    -------
    A, B, C, D : ndarray
        A balanced realisation: the observability and controllability factors share the Hankel
        matrix's singular values equally, so both are well scaled.
    """
    markov = np.asarray(markov, dtype=float)
    L, p, m = markov.shape
    rows = (L - 1 + 1) // 2 if rows is None else rows
    cols = L - 1 - rows
    if cols < 1 or min(rows * p, cols * m) < state_dim:
        raise ValueError(
            f"{L} Markov parameters cannot realise a system of order {state_dim}: a {rows} x {cols} block Hankel "
            f"matrix of {p} x {m} blocks has rank at most {min(rows * p, max(cols, 0) * m)}. "
            f"Use at least {2 * state_dim + 2} lags (n_lags) or a smaller state_dim."
        )
    H = np.block([[markov[i + j + 1] for j in range(cols)] for i in range(rows)])
    H_shift = np.block([[markov[i + j + 2] for j in range(cols)] for i in range(rows)])
    U, s, Vt = np.linalg.svd(H, full_matrices=False)
    root = np.sqrt(s[:state_dim])
    observability = U[:, :state_dim] * root
    controllability = root[:, None] * Vt[:state_dim]
    A = np.linalg.pinv(observability) @ H_shift @ np.linalg.pinv(controllability)
    return A, controllability[:, :m], observability[:p], markov[0].copy()
