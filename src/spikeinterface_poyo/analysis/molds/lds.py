"""One linear dynamical system with inputs, its Kalman filter and RTS smoother, batched over trials.

Timing convention (tested in ``tests/test_molds.py``)::

    x_0 ~ N(m0, P0)
    x_{t+1} = A x_t + B u_t + w_t,    w_t ~ N(0, Q)
    y_t     = C x_t + D u_t + v_t,    v_t ~ N(0, R)

so ``y_t`` sees ``u_t`` through ``D`` at once and ``u_{t-j}`` through ``C A^(j-1) B``: the Markov
parameters are ``G_0 = D`` and ``G_j = C A^(j-1) B``.

The filter's covariances depend on the time step only, not on the data, so they are computed once
for all trials; only the means are per trial. The smoother's covariances depend on where a trial
ends, so trials are smoothed in groups of equal length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LOG_2PI = float(np.log(2 * np.pi))


@dataclass
class LinearDynamicalSystem:
    """The parameters of one LDS (shapes: ``A`` (n, n), ``B`` (n, m), ``C`` (p, n), ``D`` (p, m),
    ``Q`` (n, n), ``R`` (p, p), ``m0`` (n,), ``P0`` (n, n)); ``m = 0`` for a system without inputs."""

    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    D: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    m0: np.ndarray
    P0: np.ndarray

    @property
    def state_dim(self) -> int:
        return self.A.shape[0]

    @property
    def input_dim(self) -> int:
        return self.B.shape[1]

    @property
    def output_dim(self) -> int:
        return self.C.shape[0]

    def markov_parameters(self, num: int) -> np.ndarray:
        """(num, p, m) impulse response: ``D``, ``C B``, ``C A B``, ..."""
        out = np.empty((num, self.output_dim, self.input_dim))
        out[0] = self.D
        AkB = self.B
        for j in range(1, num):
            out[j] = self.C @ AkB
            AkB = self.A @ AkB
        return out

    def simulate(self, inputs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """States (N, T, n) and outputs (N, T, p) of N trials driven by ``inputs`` (N, T, m);
        a single (T, m) trial gives (T, n) and (T, p)."""
        single = inputs.ndim == 2
        u = inputs[None] if single else inputs
        N, T, _ = u.shape
        n, p = self.state_dim, self.output_dim
        x = rng.multivariate_normal(self.m0, self.P0, size=N)
        w = rng.multivariate_normal(np.zeros(n), self.Q, size=(N, T))
        v = rng.multivariate_normal(np.zeros(p), self.R, size=(N, T))
        states = np.empty((N, T, n))
        for t in range(T):
            states[:, t] = x
            x = x @ self.A.T + u[:, t] @ self.B.T + w[:, t]
        outputs = states @ self.C.T + u @ self.D.T + v
        return (states[0], outputs[0]) if single else (states, outputs)

    def copy(self) -> LinearDynamicalSystem:
        return LinearDynamicalSystem(*(np.array(getattr(self, f)) for f in "A B C D Q R m0 P0".split()))


@dataclass
class TrialBatch:
    """Trials of different lengths padded to one array: ``inputs`` (N, T, m), ``outputs`` (N, T, p)
    and ``lengths`` (N,); padded steps are zeros and never counted."""

    inputs: np.ndarray
    outputs: np.ndarray
    lengths: np.ndarray
    groups: dict = field(init=False)  # length -> indices of the trials of that length

    def __post_init__(self):
        self.groups = {int(L): np.flatnonzero(self.lengths == L) for L in np.unique(self.lengths)}

    @classmethod
    def from_lists(cls, inputs, outputs) -> TrialBatch:
        lengths = np.array([len(y) for y in outputs])
        N, T, p = len(outputs), int(lengths.max()), outputs[0].shape[1]
        m = 0 if inputs is None else inputs[0].shape[1]
        U, Y = np.zeros((N, T, m)), np.zeros((N, T, p))
        for i, y in enumerate(outputs):
            Y[i, : len(y)] = y
            if m:
                U[i, : len(y)] = inputs[i]
        return cls(U, Y, lengths)

    @property
    def num_trials(self) -> int:
        return len(self.lengths)

    @property
    def max_length(self) -> int:
        return self.outputs.shape[1]


def _chol_solve_logdet(S: np.ndarray):
    L = np.linalg.cholesky(S)
    return L, 2.0 * np.log(np.diag(L)).sum()


def kalman_filter(lds: LinearDynamicalSystem, batch: TrialBatch, keep: bool = True):
    """Filter every trial of ``batch``.

    Returns the per-trial log-likelihoods (N,) and, with ``keep``, the predicted and filtered means
    (N, T, n) and covariances (T, n, n) the smoother needs. The update uses the Joseph form, which
    keeps the covariances symmetric and positive definite where the short form drifts.
    """
    A, B, C, D, Q, R = lds.A, lds.B, lds.C, lds.D, lds.Q, lds.R
    N, T = batch.num_trials, batch.max_length
    n, p = lds.state_dim, lds.output_dim
    U, Y, lengths = batch.inputs, batch.outputs, batch.lengths
    loglik = np.zeros(N)
    if keep:
        m_pred, m_filt = np.empty((N, T, n)), np.empty((N, T, n))
        P_pred, P_filt = np.empty((T, n, n)), np.empty((T, n, n))
    eye = np.eye(n)
    m = np.broadcast_to(lds.m0, (N, n)).copy()
    P = lds.P0.copy()
    m_f, P_f = m, P
    for t in range(T):
        if t:
            m = m_f @ A.T + U[:, t - 1] @ B.T
            P = A @ P_f @ A.T + Q
        S = C @ P @ C.T + R
        L, logdet = _chol_solve_logdet(0.5 * (S + S.T))
        e = Y[:, t] - m @ C.T - U[:, t] @ D.T
        z = np.linalg.solve(L, e.T)  # (p, N): whitened innovations
        alive = t < lengths
        loglik += np.where(alive, -0.5 * (p * LOG_2PI + logdet + (z * z).sum(0)), 0.0)
        K = np.linalg.solve(L.T, np.linalg.solve(L, C @ P)).T  # P C^T S^-1
        m_f = m + e @ K.T
        IKC = eye - K @ C
        P_f = IKC @ P @ IKC.T + K @ R @ K.T
        P_f = 0.5 * (P_f + P_f.T)
        if keep:
            m_pred[:, t], m_filt[:, t], P_pred[t], P_filt[t] = m, m_f, P, P_f
    if not keep:
        return loglik
    return loglik, (m_pred, P_pred, m_filt, P_filt)


@dataclass
class SufficientStatistics:
    """Responsibility-weighted sums over trials and steps of the smoothed moments (``z = [x; u]``)."""

    weight: float  # sum of the trials' weights
    steps: float  # weighted number of steps
    transitions: float  # weighted number of steps with a successor
    x0: np.ndarray  # sum w E[x_0]
    x0x0: np.ndarray  # sum w E[x_0 x_0^T]
    zz: np.ndarray  # over all steps
    yz: np.ndarray
    yy: np.ndarray
    zz_head: np.ndarray  # over steps with a successor
    x1z: np.ndarray  # sum w E[x_{t+1} z_t^T]
    x1x1: np.ndarray  # sum w E[x_{t+1} x_{t+1}^T]


def _wsum(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sum_i w_i sum_t a[i, t] b[i, t]^T`` for (N, T, da) and (N, T, db), as one matrix product."""
    return (a * w[:, None, None]).reshape(-1, a.shape[2]).T @ b.reshape(-1, b.shape[2])


def smoothed_statistics(lds: LinearDynamicalSystem, batch: TrialBatch, weights: np.ndarray, filtered):
    """RTS-smooth every trial and sum its moments weighted by ``weights`` (N,)."""
    m_pred, P_pred, m_filt, P_filt = filtered
    A = lds.A
    n, m, p = lds.state_dim, lds.input_dim, lds.output_dim
    q = n + m
    st = SufficientStatistics(
        float(weights.sum()), float(weights @ batch.lengths), float(weights @ (batch.lengths - 1)),
        np.zeros(n), np.zeros((n, n)), np.zeros((q, q)), np.zeros((p, q)), np.zeros((p, p)),
        np.zeros((q, q)), np.zeros((n, q)), np.zeros((n, n)),
    )  # fmt: skip
    for T, idx in batch.groups.items():
        w = weights[idx]
        if w.sum() <= 0:
            continue
        ms = np.empty((len(idx), T, n))
        Ps = np.empty((T, n, n))
        Pcross = np.empty((max(T - 1, 0), n, n))  # Cov(x_{t+1}, x_t | all)
        ms[:, -1], Ps[-1] = m_filt[idx, T - 1], P_filt[T - 1]
        for t in range(T - 2, -1, -1):
            J = np.linalg.solve(P_pred[t + 1], A @ P_filt[t]).T  # P_f A^T P_pred^-1
            ms[:, t] = m_filt[idx, t] + (ms[:, t + 1] - m_pred[idx, t + 1]) @ J.T
            Ps[t] = P_filt[t] + J @ (Ps[t + 1] - P_pred[t + 1]) @ J.T
            Ps[t] = 0.5 * (Ps[t] + Ps[t].T)
            Pcross[t] = Ps[t + 1] @ J.T
        u, y = batch.inputs[idx, :T], batch.outputs[idx, :T]
        z = np.concatenate([ms, u], axis=2)  # (n_g, T, n + m)
        wsum = w.sum()
        st.x0 += w @ ms[:, 0]
        st.x0x0 += wsum * Ps[0] + (ms[:, 0] * w[:, None]).T @ ms[:, 0]
        zz = _wsum(w, z, z)
        zz[:n, :n] += wsum * Ps.sum(0)
        st.zz += zz
        st.yz += _wsum(w, y, z)
        st.yy += _wsum(w, y, y)
        if T > 1:
            head = _wsum(w, z[:, :-1], z[:, :-1])
            head[:n, :n] += wsum * Ps[:-1].sum(0)
            st.zz_head += head
            x1z = _wsum(w, ms[:, 1:], z[:, :-1])
            x1z[:, :n] += wsum * Pcross.sum(0)
            st.x1z += x1z
            st.x1x1 += wsum * Ps[1:].sum(0) + _wsum(w, ms[:, 1:], ms[:, 1:])
    return st


def _psd(M: np.ndarray, floor: float) -> np.ndarray:
    """Symmetrise and lift eigenvalues to ``floor`` (a covariance estimated from few steps can lose
    definiteness to rounding)."""
    M = 0.5 * (M + M.T)
    w, V = np.linalg.eigh(M)
    return (V * np.maximum(w, floor)) @ V.T


def m_step(st: SufficientStatistics, lds: LinearDynamicalSystem, fit_D: bool = True, floor: float = 1e-9):
    """Closed-form maximisation of the expected complete-data log-likelihood: a new LDS."""
    n, m = lds.state_dim, lds.input_dim
    obs = slice(None) if fit_D else slice(0, n)  # with D fixed at 0, y regresses on x alone
    CD = np.linalg.solve(st.zz[obs, obs].T, st.yz[:, obs].T).T
    R = (st.yy - CD @ st.yz[:, obs].T) / st.steps
    C = CD[:, :n]
    D = CD[:, n:] if fit_D else np.zeros_like(lds.D)
    if st.transitions > 0:
        AB = np.linalg.solve(st.zz_head.T, st.x1z.T).T
        Q = (st.x1x1 - AB @ st.x1z.T) / st.transitions
        A, B = AB[:, :n], AB[:, n:]
    else:  # trials of one step carry no information about the dynamics
        A, B, Q = lds.A, lds.B, lds.Q
    m0 = st.x0 / st.weight
    P0 = st.x0x0 / st.weight - np.outer(m0, m0)
    scale = max(np.trace(R) / max(len(R), 1), 1e-12)
    return LinearDynamicalSystem(
        A, B.reshape(n, m), C, D, _psd(Q, floor * scale), _psd(R, floor * scale), m0, _psd(P0, floor * scale)
    )
