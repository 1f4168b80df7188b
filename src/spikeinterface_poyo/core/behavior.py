"""Behaviour as a small, explicit container (reading it from NWB files is :mod:`..io.nwb_read`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .intervals import inside


@dataclass
class Behavior:
    """A multi-dimensional behavioural time series sampled at known times.

    Parameters
    ----------
    timestamps : array_like
        (T,) sample times in seconds, on the same clock as the spike times.
    values : array_like
        (T, D) samples; a 1-D array is taken as one dimension. NaN marks a missing sample.
    name : str, default: "behavior"
        Name of the series (for example ``"hand_velocity"``).
    unit : str, default: "unknown"
        Unit of measure of ``values``.
    dimension_names : list of str or None
        One name per dimension; ``x``, ``y``, ``z`` (or ``dim0``...) when omitted.
    """

    timestamps: np.ndarray
    values: np.ndarray
    name: str = "behavior"
    unit: str = "unknown"
    dimension_names: list[str] = field(default=None)

    def __post_init__(self):
        self.timestamps = np.asarray(self.timestamps, dtype=np.float64)
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim == 1:
            values = values[:, None]
        if self.timestamps.ndim != 1:
            raise ValueError(f"timestamps must be 1-D, got shape {self.timestamps.shape}.")
        if values.ndim != 2 or values.shape[0] != self.timestamps.shape[0]:
            raise ValueError(
                f"values must have shape (T, D) with T = len(timestamps) = {len(self.timestamps)}, "
                f"got {values.shape}; transpose the array if it is (D, T)."
            )
        if not np.all(np.isfinite(self.timestamps)):
            raise ValueError("timestamps contain NaN or infinite values; drop those samples first.")
        if np.any(np.diff(self.timestamps) < 0):
            order = np.argsort(self.timestamps, kind="stable")
            self.timestamps, values = self.timestamps[order], values[order]
        self.values = values
        if self.dimension_names is None:
            d = values.shape[1]
            self.dimension_names = list("xyz"[:d]) if d <= 3 else [f"dim{i}" for i in range(d)]
        self.dimension_names = [str(n) for n in self.dimension_names]
        if len(self.dimension_names) != values.shape[1]:
            raise ValueError(f"{len(self.dimension_names)} dimension names for {values.shape[1]} dimensions.")

    @property
    def num_dimensions(self) -> int:
        return self.values.shape[1]

    @property
    def valid(self) -> np.ndarray:
        """(T,) True where every dimension is finite."""
        return np.all(np.isfinite(self.values), axis=1)

    @property
    def num_missing(self) -> int:
        """Number of samples with a NaN (they are excluded from training and scoring)."""
        return int((~self.valid).sum())

    @property
    def start_time(self) -> float:
        return float(self.timestamps[0]) if len(self.timestamps) else np.nan

    @property
    def end_time(self) -> float:
        return float(self.timestamps[-1]) if len(self.timestamps) else np.nan

    def __len__(self) -> int:
        return len(self.timestamps)

    def _subset(self, keep: np.ndarray) -> Behavior:
        return Behavior(self.timestamps[keep], self.values[keep], self.name, self.unit, self.dimension_names)

    def time_slice(self, start: float | None = None, stop: float | None = None) -> Behavior:
        """Samples with ``start <= t < stop`` (either bound may be None)."""
        keep = np.ones(len(self), dtype=bool)
        if start is not None:
            keep &= self.timestamps >= start
        if stop is not None:
            keep &= self.timestamps < stop
        return self._subset(keep)

    def restrict(self, intervals) -> Behavior:
        """Samples inside any of the ``(start, stop)`` intervals (an epochs table, say)."""
        return self._subset(inside(self.timestamps, intervals))

    def split(self, fraction: float) -> tuple[Behavior, Behavior]:
        """Split at ``fraction`` of the time span: (earlier part, later part)."""
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}.")
        cut = self.start_time + fraction * (self.end_time - self.start_time)
        return self.time_slice(None, cut), self.time_slice(cut, None)

    def contiguous_intervals(self, max_gap: float | None = None) -> np.ndarray:
        """(K, 2) spans covered without a gap longer than ``max_gap``.

        ``max_gap`` defaults to five median sampling periods, so trials or epochs
        separated by unrecorded time become separate intervals.
        """
        t = self.timestamps
        if len(t) == 0:
            return np.zeros((0, 2))
        if len(t) == 1:
            return np.array([[t[0], t[0]]])
        dt = np.diff(t)
        period = float(np.median(dt))
        max_gap = 5 * period if max_gap is None else max_gap
        breaks = np.flatnonzero(dt > max_gap)
        starts = np.concatenate([[t[0]], t[breaks + 1]])
        stops = np.concatenate([t[breaks], [t[-1]]]) + period
        return np.stack([starts, stops], axis=1)


def usable_samples(behavior) -> np.ndarray:
    """(T,) mask of a Behavior's finite samples; a clear error when there is none."""
    if not isinstance(behavior, Behavior):
        raise TypeError(f"behavior must be a sip.Behavior, got {type(behavior).__name__}; see sip.read_nwb_behavior.")
    valid = behavior.valid
    if len(behavior) == 0 or not valid.any():
        raise ValueError(
            f"Behaviour {behavior.name!r} has no usable samples ({len(behavior)} samples, "
            f"{behavior.num_missing} of them NaN)."
        )
    return valid
