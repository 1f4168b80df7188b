"""Behaviour as a small, explicit container, and reading it out of NWB files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


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
        intervals = np.asarray(intervals, dtype=np.float64).reshape(-1, 2)
        keep = np.zeros(len(self), dtype=bool)
        for start, stop in intervals:
            keep |= (self.timestamps >= start) & (self.timestamps < stop)
        return self._subset(keep)

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


def _iter_series(nwbfile):
    """Yield (path, series) for every TimeSeries in processing modules and acquisition."""
    from pynwb import TimeSeries

    def walk(container, path):
        if isinstance(container, TimeSeries):
            yield path, container
            return
        for attr in ("time_series", "spatial_series"):
            children = getattr(container, attr, None)
            if isinstance(children, dict):
                for name, child in children.items():
                    yield from walk(child, f"{path}/{name}")

    for module_name, module in nwbfile.processing.items():
        for name, obj in module.data_interfaces.items():
            yield from walk(obj, f"processing/{module_name}/{name}")
    for name, obj in nwbfile.acquisition.items():
        yield from walk(obj, f"acquisition/{name}")


def behavior_from_timeseries(series) -> Behavior:
    """Convert a pynwb ``TimeSeries`` (with ``timestamps`` or ``rate``) into a :class:`Behavior`."""
    values = np.asarray(series.data[:], dtype=np.float64)
    if series.timestamps is not None:
        timestamps = np.asarray(series.timestamps[:], dtype=np.float64)
    elif series.rate is not None:
        start = series.starting_time or 0.0
        timestamps = start + np.arange(values.shape[0]) / float(series.rate)
    else:
        raise ValueError(f"TimeSeries {series.name!r} has neither timestamps nor a rate.")
    if values.ndim > 2:
        raise ValueError(f"TimeSeries {series.name!r} has {values.ndim}-D data; only (T,) or (T, D) is supported.")
    return Behavior(timestamps, values, name=series.name, unit=str(series.unit))


def list_nwb_behaviors(path: str | Path) -> dict[str, str]:
    """Map every TimeSeries name in the file's processing modules and acquisition to its path."""
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), "r") as io:
        return {series.name: p for p, series in _iter_series(io.read())}


def read_nwb_behavior(path: str | Path, name: str) -> Behavior:
    """Read one behavioural series from an NWB file.

    The series is looked up by name (or by its path, such as
    ``"processing/behavior/Position/hand_position"``) in every processing module,
    inside containers such as ``Position`` or ``BehavioralTimeSeries``, and in
    acquisition.

    Parameters
    ----------
    path : str or Path
        The NWB file.
    name : str
        Name or path of the TimeSeries / SpatialSeries.

    Returns
    -------
    Behavior
        Timestamps, (T, D) values, name and unit of the series.
    """
    from pynwb import NWBHDF5IO

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No NWB file at {path}.")
    with NWBHDF5IO(str(path), "r") as io:
        found = dict(_iter_series(io.read()))
        matches = [p for p, s in found.items() if p == name or s.name == name]
        if not matches:
            names = sorted({s.name for s in found.values()})
            raise ValueError(f"No behavioural series named {name!r} in {path.name}; it holds {names}.")
        if len(matches) > 1:
            raise ValueError(
                f"{len(matches)} series are named {name!r} in {path.name}: {matches}; pass a path instead."
            )
        return behavior_from_timeseries(found[matches[0]])


def read_nwb_epochs(path: str | Path, tag: str) -> np.ndarray:
    """(K, 2) start and stop times of the epochs carrying ``tag`` in an NWB file's epochs table.

    For example ``read_nwb_epochs(path, "run")`` gives the running epochs of a hippocampus
    session, to restrict a position to them with :meth:`Behavior.restrict`.
    """
    from pynwb import NWBHDF5IO

    path = Path(path)
    with NWBHDF5IO(str(path), "r") as io:
        epochs = io.read().epochs
        if epochs is None:
            raise ValueError(f"{path.name} has no epochs table to find {tag!r} epochs in.")
        table = epochs.to_dataframe()
    tagged = table[table["tags"].apply(lambda tags: tag in list(tags))]
    return tagged[["start_time", "stop_time"]].to_numpy(dtype=np.float64)
