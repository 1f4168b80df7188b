"""Baseline decoders on binned spike counts, trained and scored the same way as POYO.

Every baseline reads spikes from any SpikeInterface sorting (one segment) and
behaviour from a :class:`~spikeinterface_poyo.behavior.Behavior`, and shares one
interface::

    decoder = MLPDecoder(seed=0).fit(sorting, train_behavior)
    decoded = decoder.predict(sorting, test_behavior.timestamps)  # a Behavior
    sip.r2_score(test_behavior, decoded)

- :class:`WienerFilter`: the classic causal linear decoder of BCI work, ridge
  regression from the counts of the current and previous bins.
- :class:`MLPDecoder`: a two-hidden-layer perceptron on the same kind of history.
- :class:`GRUDecoder`: a gated recurrent network run over the history bins in time order.

All features are causal: the decoder at time ``t`` only sees spikes up to ``t``.
The two neural baselines standardise their inputs (square-root counts) and targets
on the training data, hold out the last ``val_fraction`` of the training time for
early stopping, and are deterministic for a given ``seed`` on the CPU.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch import nn

from .behavior import Behavior, usable_samples
from .tokens import SpikeTokens, sorting_to_tokens

__all__ = ["GRUDecoder", "MLPDecoder", "WienerFilter", "binned_history"]


def _single_segment_tokens(sorting) -> SpikeTokens:
    """The spike tokens of a one-segment sorting (or the tokens themselves)."""
    if isinstance(sorting, SpikeTokens):
        return sorting
    segments = sorting_to_tokens(sorting)
    if len(segments) > 1:
        raise ValueError(
            f"The sorting has {len(segments)} segments; the baselines decode one segment at a time. "
            "Select one with sorting.select_segments([i])."
        )
    return segments[0]


def binned_history(sorting, timestamps: np.ndarray, bin_size: float = 0.05, lags: int = 5) -> np.ndarray:
    """Spike counts in the ``lags`` bins ending at each timestamp, (T, lags * U).

    Bin ``k`` (0 = most recent) covers ``(t - (k + 1) * bin_size, t - k * bin_size]``,
    so features only use spikes up to ``t`` (causal). Columns are ordered lag-major:
    column ``k * U + u`` is unit ``u`` in bin ``k``.

    Parameters
    ----------
    sorting : BaseSorting, SortingAnalyzer or SpikeTokens
        The spikes (a single segment).
    timestamps : array_like
        (T,) times in seconds.
    bin_size : float, default: 0.05
        Bin width in seconds.
    lags : int, default: 5
        Number of bins, the current one included.

    Returns
    -------
    np.ndarray
        (T, lags * U) float32 counts.
    """
    tokens = _single_segment_tokens(sorting)
    timestamps = np.asarray(timestamps, dtype=np.float64)
    features = np.zeros((len(timestamps), lags, tokens.num_units), dtype=np.float32)
    # all bin edges of all timestamps at once: edges[:, j] = t - j * bin_size, j = 0..lags
    edges = timestamps[:, None] - np.arange(lags + 1)[None, :] * bin_size
    order = np.argsort(tokens.unit_index, kind="stable")  # spike times grouped by unit, each group still sorted
    bounds = np.searchsorted(tokens.unit_index[order], np.arange(tokens.num_units + 1))
    for u in range(tokens.num_units):
        times = tokens.times[order[bounds[u] : bounds[u + 1]]]
        if len(times) == 0:
            continue
        cumulative = np.searchsorted(times, edges, side="right")  # spikes up to each edge
        features[:, :, u] = cumulative[:, :-1] - cumulative[:, 1:]
    return features.reshape(len(timestamps), -1)


def _training_samples(tokens: SpikeTokens, behavior: Behavior) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps and values of the valid behaviour samples that lie within the spikes' span.

    Raises a ``ValueError`` naming the problem when there are none (or too few to fit).
    """
    valid = usable_samples(behavior)
    t = behavior.timestamps
    inside = valid & (t >= tokens.start_time) & (t <= tokens.end_time)
    if not inside.any():
        raise ValueError(
            f"Behaviour {behavior.name!r} ({behavior.start_time:.3f}-{behavior.end_time:.3f} s) does not overlap "
            f"the spikes ({tokens.start_time:.3f}-{tokens.end_time:.3f} s). Are both on the same clock? Shift one "
            "of them (sorting.shift_times or behavior.timestamps) so they line up."
        )
    if inside.sum() < 20:
        raise ValueError(
            f"Only {int(inside.sum())} valid behaviour samples overlap the spikes; a baseline needs at least 20."
        )
    return t[inside], behavior.values[inside]


def _validation_cut(n: int, val_fraction: float) -> int:
    """Index splitting ``n`` time-ordered samples into training and the last ``val_fraction``."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}.")
    cut = int(round(n * (1 - val_fraction)))
    if cut < 1 or cut >= n - 1:
        raise ValueError(f"{n} samples are too few to hold out {val_fraction:.0%} for validation.")
    return cut


def _mean_r2(y: np.ndarray, p: np.ndarray) -> float:
    residual = ((y - p) ** 2).sum(axis=0)
    total = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    return float(np.mean(1 - residual / np.where(total > 0, total, np.nan)))


class _FittedMixin:
    """Checks shared by the decoders' ``predict``."""

    def _check_fitted(self, tokens: SpikeTokens) -> None:
        if not hasattr(self, "behavior_"):
            raise RuntimeError(f"This {type(self).__name__} is not fitted yet; call fit(sorting, behavior) first.")
        if tokens.num_units != self.num_units_:
            raise ValueError(
                f"The decoder was fitted on {self.num_units_} units but this sorting has {tokens.num_units}; "
                "decode the sorting it was fitted on."
            )

    def _as_behavior(self, timestamps: np.ndarray, values: np.ndarray) -> Behavior:
        b = self.behavior_
        return Behavior(timestamps, values, f"decoded_{b.name}", b.unit, b.dimension_names)


class WienerFilter(_FittedMixin):
    """Causal linear decoder: ridge regression on binned spike-count history.

    Parameters
    ----------
    bin_size : float, default: 0.05
        Bin width in seconds.
    lags : int, default: 5
        Number of bins of history (the current bin included).
    alphas : sequence of float
        Ridge penalties tried; the one with the best R² on the last ``val_fraction`` of
        the training data is kept, then the model is refitted on all of it.
    val_fraction : float, default: 0.1
        Held-out part of the training data used to choose the penalty.
    """

    def __init__(self, bin_size=0.05, lags=5, alphas=(0.1, 1.0, 10.0, 100.0, 1000.0, 1e4), val_fraction=0.1):
        self.bin_size, self.lags, self.alphas, self.val_fraction = bin_size, lags, tuple(alphas), val_fraction

    @staticmethod
    def _solve(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
        gram = x.T @ x + alpha * np.eye(x.shape[1])
        gram[-1, -1] -= alpha  # no penalty on the intercept column
        return np.linalg.solve(gram, x.T @ y)

    def _design(self, tokens, timestamps) -> np.ndarray:
        x = binned_history(tokens, timestamps, self.bin_size, self.lags)
        x = (x - self.mean_) / self.scale_
        return np.hstack([x, np.ones((len(x), 1))])

    def fit(self, sorting, behavior: Behavior) -> WienerFilter:
        """Fit on the valid samples of ``behavior`` that overlap the spikes.

        Parameters
        ----------
        sorting : BaseSorting or SortingAnalyzer
            Spikes of the session (one segment).
        behavior : Behavior
            Target behaviour on the spikes' clock; NaN samples are left out.

        Returns
        -------
        WienerFilter
            ``self``, with ``alpha_`` and ``coef_`` set.
        """
        tokens = _single_segment_tokens(sorting)
        t, y = _training_samples(tokens, behavior)
        raw = binned_history(tokens, t, self.bin_size, self.lags)
        self.mean_, self.scale_ = raw.mean(axis=0), raw.std(axis=0) + 1e-6
        x = np.hstack([(raw - self.mean_) / self.scale_, np.ones((len(raw), 1))])
        cut = _validation_cut(len(x), self.val_fraction)
        scores = [_mean_r2(y[cut:], x[cut:] @ self._solve(x[:cut], y[:cut], alpha)) for alpha in self.alphas]
        self.alpha_ = self.alphas[int(np.nanargmax(scores))]
        self.coef_ = self._solve(x, y, self.alpha_)
        self.num_units_ = tokens.num_units
        self.behavior_ = behavior
        return self

    def predict(self, sorting, timestamps) -> Behavior:
        """Decode at ``timestamps`` (seconds); returns a :class:`Behavior` in the behaviour's units."""
        tokens = _single_segment_tokens(sorting)
        self._check_fitted(tokens)
        timestamps = np.asarray(timestamps, dtype=np.float64)
        return self._as_behavior(timestamps, self._design(tokens, timestamps) @ self.coef_)


class _NeuralDecoder(_FittedMixin):
    """Shared fitting of the neural baselines: features, standardisation, early stopping.

    Subclasses define :meth:`_network`, which maps (B, lags, U) standardised inputs,
    oldest bin first, to (B, D) standardised behaviour.
    """

    def __init__(
        self,
        *,
        bin_size: float,
        lags: int,
        hidden: int,
        dropout: float,
        lr: float,
        weight_decay: float,
        batch_size: int,
        max_epochs: int,
        patience: int,
        val_fraction: float,
        max_time_s: float | None,
        seed: int,
        device,
    ):
        self.bin_size, self.lags, self.hidden, self.dropout = bin_size, lags, hidden, dropout
        self.lr, self.weight_decay, self.batch_size = lr, weight_decay, batch_size
        self.max_epochs, self.patience, self.val_fraction = max_epochs, patience, val_fraction
        self.max_time_s, self.seed = max_time_s, seed
        self.device = device

    def _network(self, num_units: int, dim_out: int) -> nn.Module:
        raise NotImplementedError

    def _sqrt_history(self, tokens: SpikeTokens, timestamps: np.ndarray) -> np.ndarray:
        """(T, lags, U) square-root counts, oldest bin first (sqrt evens out Poisson variance)."""
        counts = binned_history(tokens, timestamps, self.bin_size, self.lags)
        return np.sqrt(counts).reshape(len(timestamps), self.lags, -1)[:, ::-1]

    def _standardise(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray((x - self.x_mean_) / self.x_scale_, dtype=np.float32))

    def _device(self) -> torch.device:
        if self.device is not None:
            return torch.device(self.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    @torch.no_grad()
    def _forward_all(self, x: torch.Tensor, chunk: int = 4096) -> np.ndarray:
        self.network_.eval()
        out = [self.network_(x[i : i + chunk].to(self.device_)).float().cpu() for i in range(0, len(x), chunk)]
        return torch.cat(out).numpy().astype(np.float64)

    def fit(self, sorting, behavior: Behavior):
        """Train on the valid samples of ``behavior`` that overlap the spikes.

        The last ``val_fraction`` of the samples (in time) is held out; the weights of
        the epoch with the best validation R² are kept.

        Parameters
        ----------
        sorting : BaseSorting or SortingAnalyzer
            Spikes of the session (one segment).
        behavior : Behavior
            Target behaviour on the spikes' clock; NaN samples are left out.

        Returns
        -------
        self
            With ``history_`` (per-epoch training loss and validation R²), ``best_epoch_``
            and ``fit_time_s_`` set.
        """
        t0 = time.perf_counter()
        tokens = _single_segment_tokens(sorting)
        t, y = _training_samples(tokens, behavior)
        cut = _validation_cut(len(t), self.val_fraction)
        raw = self._sqrt_history(tokens, t)
        # statistics of the training part only, as POYO's, so validation stays unseen
        self.x_mean_ = raw[:cut].mean(axis=(0, 1))  # per unit, pooled over lags
        self.x_scale_ = raw[:cut].std(axis=(0, 1)) + 1e-3  # silent units stay at 0 rather than blowing up
        x = self._standardise(raw)
        self.y_mean_ = y[:cut].mean(axis=0)
        self.y_scale_ = np.where(y[:cut].std(axis=0) > 0, y[:cut].std(axis=0), 1.0)
        z = torch.from_numpy(((y - self.y_mean_) / self.y_scale_).astype(np.float32))

        self.device_ = self._device()
        torch.manual_seed(self.seed)
        self.network_ = self._network(tokens.num_units, y.shape[1]).to(self.device_)
        self.num_units_, self.behavior_ = tokens.num_units, behavior
        self._train(x[:cut].to(self.device_), z[:cut].to(self.device_), x[cut:], z[cut:].numpy(), t0)
        self.fit_time_s_ = time.perf_counter() - t0
        return self

    def _train(self, x: torch.Tensor, z: torch.Tensor, x_val: torch.Tensor, z_val: np.ndarray, t0: float) -> None:
        """Mini-batch AdamW with early stopping on validation R²; keeps the best weights."""
        net = self.network_
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        generator = torch.Generator().manual_seed(self.seed)  # shuffling independent of the global RNG
        best_r2, best_state, best_epoch = -np.inf, copy.deepcopy(net.state_dict()), 0
        self.history_ = {"train_loss": [], "val_r2": []}
        for epoch in range(self.max_epochs):
            net.train()
            losses = []
            for index in torch.randperm(len(x), generator=generator).split(self.batch_size):
                index = index.to(x.device)
                loss = nn.functional.mse_loss(net(x[index]), z[index])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.item())
            val_r2 = _mean_r2(z_val, self._forward_all(x_val))
            self.history_["train_loss"].append(float(np.mean(losses)))
            self.history_["val_r2"].append(val_r2)
            if val_r2 > best_r2:
                best_r2, best_state, best_epoch = val_r2, copy.deepcopy(net.state_dict()), epoch + 1
            if epoch + 1 - best_epoch >= self.patience:
                break
            if self.max_time_s is not None and time.perf_counter() - t0 > self.max_time_s:
                break
        net.load_state_dict(best_state)
        net.eval()
        self.best_epoch_, self.best_val_r2_ = best_epoch, float(best_r2)

    def predict(self, sorting, timestamps) -> Behavior:
        """Decode at ``timestamps`` (seconds); returns a :class:`Behavior` in the behaviour's units."""
        tokens = _single_segment_tokens(sorting)
        self._check_fitted(tokens)
        timestamps = np.asarray(timestamps, dtype=np.float64)
        z = self._forward_all(self._standardise(self._sqrt_history(tokens, timestamps)))
        return self._as_behavior(timestamps, z * self.y_scale_ + self.y_mean_)


class _MLP(nn.Module):
    def __init__(self, num_inputs: int, hidden: int, dim_out: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(num_inputs, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _GRU(nn.Module):
    def __init__(self, num_units: int, hidden: int, dim_out: int, dropout: float):
        super().__init__()
        self.input_dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(num_units, hidden, batch_first=True)
        self.readout = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, dim_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, last = self.gru(self.input_dropout(x))  # last: (1, B, hidden), the state after the newest bin
        return self.readout(last[0])


class MLPDecoder(_NeuralDecoder):
    """Multi-layer perceptron on binned spike-count history.

    Inputs are the square-root counts of each unit in the ``lags`` bins ending at the
    decoded time (causal), standardised per unit; targets are standardised per
    dimension. Two hidden GELU layers with dropout, trained with AdamW and early
    stopping on the last ``val_fraction`` of the training time.

    Parameters
    ----------
    bin_size : float, default: 0.05
        Bin width in seconds.
    lags : int, default: 10
        Number of bins of history (the current bin included).
    hidden : int, default: 256
        Width of the hidden layers.
    dropout : float, default: 0.3
        Dropout after each hidden layer.
    lr : float, default: 1e-3
        AdamW learning rate.
    weight_decay : float, default: 1e-2
        AdamW weight decay.
    batch_size : int, default: 256
        Samples per step.
    max_epochs : int, default: 100
        Most passes over the training samples.
    patience : int, default: 10
        Epochs without a better validation R² before stopping.
    val_fraction : float, default: 0.1
        Last fraction of the training samples (in time) held out for early stopping.
    max_time_s : float or None, default: None
        Wall-clock budget for training; runs cut short by it are no longer reproducible.
    seed : int, default: 0
        Seed of initialisation, shuffling and dropout.
    device : str, torch.device or None
        Defaults to CUDA when available, else CPU.

    Examples
    --------
    >>> train, test = behavior.split(0.7)
    >>> mlp = MLPDecoder(seed=0).fit(sorting, train)
    >>> sip.r2_score(test, mlp.predict(sorting, test.timestamps))["mean"]
    """

    def __init__(
        self,
        bin_size: float = 0.05,
        lags: int = 10,
        hidden: int = 256,
        dropout: float = 0.3,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        batch_size: int = 256,
        max_epochs: int = 100,
        patience: int = 10,
        val_fraction: float = 0.1,
        max_time_s: float | None = None,
        seed: int = 0,
        device=None,
    ):
        super().__init__(**{k: v for k, v in locals().items() if k not in ("self", "__class__")})

    def _network(self, num_units: int, dim_out: int) -> nn.Module:
        return _MLP(self.lags * num_units, self.hidden, dim_out, self.dropout)


class GRUDecoder(_NeuralDecoder):
    """Gated recurrent network run over binned spike-count history.

    The GRU reads the standardised square-root counts of the ``lags`` bins ending at
    the decoded time, oldest first (causal), and a linear readout maps its last state
    to the standardised behaviour. Trained with AdamW and early stopping on the last
    ``val_fraction`` of the training time.

    Parameters
    ----------
    bin_size : float, default: 0.05
        Bin width in seconds.
    lags : int, default: 10
        Number of bins the GRU runs over (the current bin included).
    hidden : int, default: 64
        Size of the GRU state.
    dropout : float, default: 0.2
        Dropout on the inputs and before the readout.
    lr : float, default: 3e-3
        AdamW learning rate.
    weight_decay : float, default: 1e-2
        AdamW weight decay.
    batch_size : int, default: 256
        Samples per step.
    max_epochs : int, default: 100
        Most passes over the training samples.
    patience : int, default: 10
        Epochs without a better validation R² before stopping.
    val_fraction : float, default: 0.1
        Last fraction of the training samples (in time) held out for early stopping.
    max_time_s : float or None, default: None
        Wall-clock budget for training; runs cut short by it are no longer reproducible.
    seed : int, default: 0
        Seed of initialisation, shuffling and dropout.
    device : str, torch.device or None
        Defaults to CUDA when available, else CPU.
    """

    def __init__(
        self,
        bin_size: float = 0.05,
        lags: int = 10,
        hidden: int = 64,
        dropout: float = 0.2,
        lr: float = 3e-3,
        weight_decay: float = 1e-2,
        batch_size: int = 256,
        max_epochs: int = 100,
        patience: int = 10,
        val_fraction: float = 0.1,
        max_time_s: float | None = None,
        seed: int = 0,
        device=None,
    ):
        super().__init__(**{k: v for k, v in locals().items() if k not in ("self", "__class__")})

    def _network(self, num_units: int, dim_out: int) -> nn.Module:
        return _GRU(num_units, self.hidden, dim_out, self.dropout)
