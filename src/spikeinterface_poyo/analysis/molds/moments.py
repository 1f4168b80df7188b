"""Tensor-moment initialisation of a mixture of LDSs (the tensor stage of Tensor-EM).

With Gaussian white inputs, each output is a linear regression on the last ``L`` inputs,
``y_t = sum_j G_j u_{t-j} + e_t``, where the error ``e_t`` (the state before the lags and all
noise) is independent of those inputs. A trial's ``G`` is one of ``K`` systems', so the lagged
samples follow a mixture of linear regressions, whose Gaussian-corrected moments are low-rank
(``g`` a system's regression vector for the scalar output ``y = v^T y_t``, ``ū`` the whitened
lagged inputs)::

    M2 = (E[y^2 ū ū^T] - E[y^2] I) / 2                         = sum_k p_k g_k g_k^T
    M3 = (E[y^3 ū⊗ū⊗ū] - sym(E[y^3 ū] ⊗ I)) / 6                = sum_k p_k g_k⊗g_k⊗g_k

``M2`` and ``M3`` are estimated on disjoint halves of the trials (so the whitening does not see
the samples it is applied to), ``M3`` is whitened by ``M2`` into an orthogonal tensor, and that
tensor is decomposed by simultaneous diagonalisation of its slices (Jacobi rotations) or by the
robust tensor power method. The eigenvalues give the weights, the eigenvectors the regression
vectors. With several outputs, each output's regression vector is then read off a cross-moment
``E[y_i y^2 ū⊗ū⊗ū]`` contracted with the recovered directions (a closed form; see
:func:`_output_rows`).
"""

from __future__ import annotations

import numpy as np

#: lagged samples per chunk: bounds the memory of the moment sums
CHUNK = 200_000


def lagged_inputs(u: np.ndarray, num_lags: int) -> np.ndarray:
    """(T - L + 1, m L) rows ``[u_t, u_{t-1}, ..., u_{t-L+1}]`` for ``t = L-1 .. T-1``."""
    T = len(u)
    return np.concatenate([u[num_lags - 1 - j : T - j] for j in range(num_lags)], axis=1)


def _chunks(inputs, outputs, trials, num_lags: int, mean, unwhite):
    """Yield (lagged whitened inputs, outputs) for ``trials``, about ``CHUNK`` samples at a time."""
    us, ys, size = [], [], 0
    for i in trials:
        u = (inputs[i] - mean) @ unwhite.T
        us.append(lagged_inputs(u, num_lags))
        ys.append(outputs[i][num_lags - 1 :])
        size += len(us[-1])
        if size >= CHUNK:
            yield np.concatenate(us), np.concatenate(ys)
            us, ys, size = [], [], 0
    if us:
        yield np.concatenate(us), np.concatenate(ys)


def _sym_outer(vec: np.ndarray, mat: np.ndarray) -> np.ndarray:
    """``vec ⊗ mat`` summed over the three placements of ``vec``."""
    return np.einsum("a,bc->abc", vec, mat) + np.einsum("b,ac->abc", vec, mat) + np.einsum("c,ab->abc", vec, mat)


def joint_diagonalize(matrices: np.ndarray, tol: float = 1e-12, max_sweeps: int = 100) -> np.ndarray:
    """Orthogonal ``V`` making every symmetric ``V^T M_j V`` as diagonal as possible (Jacobi rotations
    of Cardoso and Souloumiac, real case). ``matrices``: (J, K, K). Returns V (K, K)."""
    M = np.array(matrices, dtype=float)
    K = M.shape[1]
    V = np.eye(K)
    for _ in range(max_sweeps):
        rotated = False
        for p in range(K - 1):
            for q in range(p + 1, K):
                h = np.stack([M[:, p, p] - M[:, q, q], M[:, p, q] + M[:, q, p]])  # (2, J)
                G = h @ h.T
                w, E = np.linalg.eigh(G)
                x, y = E[:, -1] * (1 if E[0, -1] >= 0 else -1)
                c = np.sqrt((1 + x) / 2)
                s = y / (2 * c) if c > 0 else 1.0
                if abs(s) <= tol:
                    continue
                rotated = True
                Rot = np.eye(K)
                Rot[p, p] = Rot[q, q] = c
                Rot[p, q], Rot[q, p] = -s, s
                M = Rot.T @ M @ Rot
                V = V @ Rot
        if not rotated:
            break
    return V


def tensor_power(T: np.ndarray, rng: np.random.Generator, starts: int = 10, iters: int = 100):
    """Robust tensor power method with deflation (Anandkumar et al. 2014) on an orthogonal
    symmetric tensor (K, K, K). Returns eigenvalues (K,) and eigenvectors (K, K) as columns."""
    T = np.array(T, dtype=float)
    K = T.shape[0]
    values, vectors = np.empty(K), np.empty((K, K))
    for k in range(K):
        best, best_val = None, -np.inf
        for _ in range(starts):
            th = rng.standard_normal(K)
            th /= np.linalg.norm(th)
            for _ in range(iters):
                th = np.einsum("abc,b,c->a", T, th, th)
                th /= max(np.linalg.norm(th), 1e-300)
            val = np.einsum("abc,a,b,c->", T, th, th, th)
            if val > best_val:
                best, best_val = th, val
        for _ in range(iters):
            best = np.einsum("abc,b,c->a", T, best, best)
            best /= max(np.linalg.norm(best), 1e-300)
        values[k] = np.einsum("abc,a,b,c->", T, best, best, best)
        vectors[:, k] = best
        T = T - values[k] * np.einsum("a,b,c->abc", best, best, best)
    return values, vectors


def _input_whitening(inputs):
    u = np.concatenate(inputs)
    mean = u.mean(0)
    cov = np.atleast_2d(np.cov(u, rowvar=False))
    chol = np.linalg.cholesky(cov)
    return mean, np.linalg.inv(chol), chol


def _best_projection(pair_moments: np.ndarray, K: int, rng, candidates: int = 64) -> np.ndarray:
    """The output projection ``v`` whose second moment is best conditioned at rank K (largest ratio of
    its K-th to first eigenvalue), among the output axes and random directions: the whitening divides
    by the K-th eigenvalue, so a projection in which two systems look alike would amplify noise."""
    p = pair_moments.shape[0]
    if p == 1:
        return np.ones(1)
    vs = np.vstack([np.eye(p), rng.standard_normal((candidates, p))])
    vs /= np.linalg.norm(vs, axis=1, keepdims=True)

    def conditioning(v):
        e = np.linalg.eigvalsh(np.einsum("a,b,abij->ij", v, v, pair_moments))[::-1]
        return e[K - 1] / max(e[0], 1e-300)

    return max(vs, key=conditioning)


def tensor_initialization(
    inputs, outputs, n_components: int, n_lags: int, decomposition: str = "smd", rng=None
) -> tuple[np.ndarray, np.ndarray]:
    """Mixture weights (K,) and Markov parameters (K, L, p, m) from the moments of lagged inputs.

    ``inputs`` and ``outputs``: lists of (T_i, m) and (T_i, p) arrays. Inputs are whitened by their
    pooled mean and covariance first (the moment corrections assume white Gaussian inputs); the
    returned Markov parameters are in the original input units.
    """
    rng = np.random.default_rng(rng)
    K, L = n_components, n_lags
    m, p = inputs[0].shape[1], outputs[0].shape[1]
    d = m * L
    if K > d:
        raise ValueError(
            f"The tensor initialisation resolves at most m * n_lags = {d} components from the moments; "
            f"asked for {K}. Use more lags (n_lags) or init='random'."
        )
    mean, unwhite, chol = _input_whitening(inputs)
    order = rng.permutation(len(outputs))
    half_a, half_b = order[::2], order[1::2]

    # second moments of every output pair on half A: M2 of any projection y = v^T y_t follows
    S2, s2, n2 = np.zeros((p, p, d, d)), np.zeros((p, p)), 0
    for U, Y in _chunks(inputs, outputs, half_a, L, mean, unwhite):
        S2 += np.einsum("sa,sb,si,sj->abij", Y, Y, U, U)
        s2 += Y.T @ Y
        n2 += len(U)
    pair_moments = (S2 / n2 - (s2 / n2)[:, :, None, None] * np.eye(d)) / 2
    v = _best_projection(pair_moments, K, rng)
    M2 = np.einsum("a,b,abij->ij", v, v, pair_moments)
    evals, evecs = np.linalg.eigh(M2)
    evals, evecs = evals[::-1][:K], evecs[:, ::-1][:, :K]
    if evals[-1] <= 1e-10 * max(evals[0], 1e-300):
        raise ValueError(
            f"The second moment shows fewer than {K} distinct systems (eigenvalues {np.round(evals, 6)}); "
            "fit fewer components, use more trials, or init='random'."
        )
    W = evecs / np.sqrt(evals)  # whitening: W^T M2 W = I

    # whitened third moment on half B
    S3, s1, n3 = np.zeros((K, K, K)), np.zeros(K), 0
    for U, Y in _chunks(inputs, outputs, half_b, L, mean, unwhite):
        Z, yv3 = U @ W, (Y @ v) ** 3
        S3 += np.einsum("s,sa,sb,sc->abc", yv3, Z, Z, Z)
        s1 += yv3 @ Z
        n3 += len(U)
    T3 = (S3 / n3 - _sym_outer(s1 / n3, W.T @ W)) / 6

    if decomposition == "smd":
        mu = joint_diagonalize(np.moveaxis(T3, 2, 0))
        lam = np.einsum("abc,ak,bk,ck->k", T3, mu, mu, mu)
    elif decomposition == "power":
        lam, mu = tensor_power(T3, rng)
    else:
        raise ValueError(f"decomposition must be 'smd' or 'power', not {decomposition!r}.")
    mu = mu * np.where(lam < 0, -1.0, 1.0)  # the sign of a component is the sign of its eigenvalue
    lam = np.abs(lam)
    lam = np.maximum(lam, 1e-12)
    weights = 1 / lam**2
    beta = (evecs * np.sqrt(evals)) @ (mu * lam)  # (d, K): the regression vectors of y = v^T y_t
    rows = (
        beta.T[:, None, :] if p == 1 else _output_rows(inputs, outputs, half_b, L, mean, unwhite, v, W, mu, lam, beta)
    )
    markov = rows.reshape(K, p, L, m).transpose(0, 2, 1, 3) @ unwhite  # back to the inputs' units
    return weights / weights.sum(), markov


def _output_rows(inputs, outputs, trials, L, mean, unwhite, v, W, mu, lam, beta) -> np.ndarray:
    """(K, p, d) regression vectors of every output, from the corrected cross-moment
    ``E[y_i y^2 ū⊗ū⊗ū] = sum_k p_k 2 sym(g_ik ⊗ g_k ⊗ g_k)``. Contracting its last two modes with
    ``a_k = W mu_k`` gives ``r = g_ik + 2 g_k (g_ik . a_k) / lambda_k``, so ``g_ik . a_k = r . a_k / 3``
    and ``g_ik`` follows."""
    a = W @ mu  # (d, K)
    p, d, K = len(v), a.shape[0], a.shape[1]
    F, raw, n = np.zeros((p, d)), np.zeros((K, p, d)), 0
    for U, Y in _chunks(inputs, outputs, trials, L, mean, unwhite):
        c = Y * ((Y @ v) ** 2)[:, None]  # y_i y^2, (S, p)
        F += c.T @ U
        proj2 = (U @ a) ** 2  # (S, K)
        raw += np.einsum("si,sk,sa->kia", c, proj2, U)
        n += len(U)
    F, raw = F / n, raw / n
    rows = np.empty((K, p, d))
    for k in range(K):
        ak = a[:, k]
        r = (raw[k] - F * (ak @ ak) - 2 * np.outer(F @ ak, ak)) / 2
        rows[k] = r - 2 * np.outer(r @ ak / 3, beta[:, k]) / lam[k]
    return rows
