"""Windows of time: where they go (random for training, a stepped sweep for decoding), which
query times fall in each, and how overlapping windows' predictions are blended into one series."""

from __future__ import annotations

import numpy as np


def ragged_gather(lo: np.ndarray, hi: np.ndarray, min_width: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``lo[b] .. hi[b]-1`` of each row padded to the longest row, plus the mask."""
    counts = hi - lo
    width = max(int(counts.max(initial=0)), min_width)
    offsets = np.arange(width)
    mask = offsets[None, :] < counts[:, None]
    index = np.where(mask, lo[:, None] + offsets[None, :], 0)
    return index, mask


def window_queries(timestamps: np.ndarray, starts: np.ndarray, length: float):
    """Which of the sorted ``timestamps`` fall in each window ``[start, start + length)``.

    Returns
    -------
    index : np.ndarray
        (B, M) index into ``timestamps`` (padded with 0).
    mask : np.ndarray
        (B, M) True for real queries.
    relative_times : np.ndarray
        (B, M) float32 query times from each window's start (0 where padded).
    """
    starts = np.asarray(starts, dtype=np.float64)
    lo = np.searchsorted(timestamps, starts, side="left")
    hi = np.searchsorted(timestamps, starts + length, side="left")
    index, mask = ragged_gather(lo, hi)
    relative = np.where(mask, timestamps[index] - starts[:, None], 0.0)
    return index, mask, relative.astype(np.float32)


def sample_window_starts(intervals: np.ndarray, window: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random window starts, each window lying inside one interval, uniform over time."""
    room = intervals[:, 1] - intervals[:, 0] - window
    which = (
        rng.choice(len(intervals), size=n, p=room / room.sum())
        if room.sum() > 0
        else rng.integers(len(intervals), size=n)
    )
    return intervals[which, 0] + rng.random(n) * np.maximum(room[which], 0)


def tiling_starts(intervals: np.ndarray, window: float) -> np.ndarray:
    """Starts of non-overlapping windows tiling each interval from its start (the remainder
    shorter than a window left out)."""
    return np.concatenate([np.arange(a, b - window + 1e-9, window) for a, b in intervals] or [np.zeros(0)])


def sweep_starts(timestamps: np.ndarray, length: float, overlap: float) -> np.ndarray:
    """Starts of a stepped sweep of windows over sorted ``timestamps``: every time sits near the
    middle of one window, consecutive windows share ``overlap`` of their length, and windows that
    hold no timestamp at all (gaps between trials, say) are left out."""
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}.")
    step = length * (1.0 - overlap)
    starts = np.arange(timestamps[0] - length / 2, timestamps[-1] + step, step)
    lo = np.searchsorted(timestamps, starts, side="left")
    hi = np.searchsorted(timestamps, starts + length, side="left")
    return starts[hi > lo]


class WindowBlender:
    """Weighted average of overlapping windows' predictions at each query time.

    A prediction's weight is triangular in its place in the window: 1 at the centre, small
    at the edges, where the window holds less context.
    """

    def __init__(self, num_times: int, dim: int, length: float):
        self.total = np.zeros((num_times, dim))
        self.weight = np.zeros(num_times)
        self.length = length

    def add(self, index: np.ndarray, mask: np.ndarray, relative: np.ndarray, values: np.ndarray) -> None:
        """Add (B, M, D) ``values`` at (B, M) ``index`` (from :func:`window_queries`)."""
        w = (1.0 - np.abs(2.0 * relative / self.length - 1.0) + 1e-3) * mask
        np.add.at(self.total, index[mask], values[mask] * w[mask][:, None])
        np.add.at(self.weight, index[mask], w[mask])

    def result(self) -> np.ndarray:
        """(T, D) blended predictions; NaN where no window covered a time."""
        out = np.full_like(self.total, np.nan)
        covered = self.weight > 0
        out[covered] = self.total[covered] / self.weight[covered][:, None]
        return out
