"""Time intervals, as (K, 2) arrays of ``[start, stop)`` seconds: membership, clipping, splitting."""

from __future__ import annotations

import numpy as np


def as_intervals(intervals) -> np.ndarray:
    """(K, 2) float64 array of ``(start, stop)`` pairs; a clear error for anything else."""
    intervals = np.asarray(intervals, dtype=np.float64)
    if intervals.size == 0:
        return np.zeros((0, 2))
    if intervals.ndim == 1 and intervals.shape == (2,):
        intervals = intervals[None, :]
    if intervals.ndim != 2 or intervals.shape[1] != 2:
        raise ValueError(f"intervals must be (start, stop) pairs, shape (K, 2); got shape {intervals.shape}.")
    if np.any(intervals[:, 1] < intervals[:, 0]):
        raise ValueError("Every interval must have start <= stop.")
    return intervals


def inside(times: np.ndarray, intervals) -> np.ndarray:
    """Which ``times`` fall inside one of the ``[start, stop)`` intervals."""
    times = np.asarray(times, dtype=np.float64)
    keep = np.zeros(len(times), dtype=bool)
    for start, stop in as_intervals(intervals):
        keep |= (times >= start) & (times < stop)
    return keep


def intersect(intervals: np.ndarray, start: float, stop: float) -> np.ndarray:
    """The parts of ``intervals`` inside ``[start, stop)`` (empty ones dropped)."""
    clipped = np.clip(intervals, start, stop)
    return clipped[clipped[:, 1] > clipped[:, 0]]


def total_seconds(intervals: np.ndarray) -> float:
    """Time covered by (non-overlapping) intervals."""
    return float((intervals[:, 1] - intervals[:, 0]).sum()) if len(intervals) else 0.0


def split_intervals(intervals: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Split a set of intervals in time: the last ``val_fraction`` of covered time is validation."""
    if val_fraction <= 0:
        return intervals, np.zeros((0, 2))
    lengths = intervals[:, 1] - intervals[:, 0]
    target = (1 - val_fraction) * lengths.sum()
    cumulative = np.concatenate([[0.0], np.cumsum(lengths)])
    k = int(np.searchsorted(cumulative, target, side="right") - 1)
    k = min(k, len(intervals) - 1)
    cut = intervals[k, 0] + (target - cumulative[k])
    return intersect(intervals, -np.inf, cut), intersect(intervals, cut, np.inf)


def subtract(intervals: np.ndarray, removed) -> np.ndarray:
    """The parts of ``intervals`` outside every interval of ``removed``."""
    out = as_intervals(intervals)
    for start, stop in as_intervals(removed):
        out = np.concatenate([intersect(out, -np.inf, start), intersect(out, stop, np.inf)])
    return out[np.argsort(out[:, 0], kind="stable")] if len(out) else out


def overlap_seconds(a, b) -> float:
    """Time that the intervals ``a`` and ``b`` share."""
    return float(sum(total_seconds(intersect(as_intervals(a), start, stop)) for start, stop in as_intervals(b)))
