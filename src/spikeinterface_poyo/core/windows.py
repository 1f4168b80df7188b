"""Windows of time: where they go (random for training, a stepped sweep or one window ending at
each prediction time for decoding), which query times fall in each, and how overlapping windows'
predictions are blended into one series.

Two *contexts* place a decoding window around a prediction time ``t``:

- ``"centred"``: overlapping windows sweep the segment and each time is read near the middle
  of the windows that hold it, so a prediction uses spikes before and after ``t``;
- ``"causal"``: one window ``[t - length, t)`` ends at each prediction time, so a prediction uses
  only the spikes before ``t`` (a closed-loop brain-computer interface's constraint).
"""

from __future__ import annotations

import numpy as np

#: Where a decoding window sits around a prediction time (see the module docstring).
CONTEXTS = ("centred", "causal")
#: Slack (seconds) of the window-placement comparisons: far below any sampling interval, far above
#: the float64 rounding of ``t - length + length``.
TIME_TOLERANCE = 1e-9


def check_context(context: str) -> str:
    """``context`` if it is one of :data:`CONTEXTS`; a ``ValueError`` naming the choices if not."""
    if context not in CONTEXTS:
        hint = " (the package spells it 'centred')" if context == "centered" else ""
        raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}{hint}.")
    return context


def check_hop(hop: float, length: float) -> float:
    """``hop`` (seconds between causal predictions) if a whole number of hops makes the window, so
    that a window ending on a hop also starts on one (binned input never straddles its edge)."""
    hop = float(hop)
    if not (np.isfinite(hop) and 0 < hop <= length):
        raise ValueError(f"hop must be positive and at most the window ({length:g} s), got {hop}.")
    steps = length / hop
    if abs(steps - round(steps)) > 1e-6 * steps:
        near = " or ".join(f"{h:.4g}" for h in sorted({length / max(np.floor(steps), 1.0), length / np.ceil(steps)}))
        raise ValueError(
            f"hop={hop:g} s does not divide the model's {length:g} s window ({steps:.4g} hops): every window must "
            f"start and end on a hop (a bin edge of the stream). Choose hop = window / n for a whole n, e.g. {near}."
        )
    return hop


def has_full_context(timestamps: np.ndarray, start: float, end: float, length: float) -> np.ndarray:
    """Where the causal window ``[t - length, t)`` of each time lies inside the data ``[start, end]``.

    A time less than one window after ``start`` has too little history, and one after ``end``
    would be read from spikes not yet known; causal decoding gives neither a prediction.
    """
    t = np.asarray(timestamps, dtype=np.float64)
    return (t - length >= start - TIME_TOLERANCE) & (t <= end + TIME_TOLERANCE)


def causal_windows(timestamps: np.ndarray, length: float, start: float, end: float):
    """One window ending at each of ``timestamps`` that has a full window of data before it.

    Returns
    -------
    starts : np.ndarray
        (B,) window starts ``t - length``.
    index, mask, relative_times : np.ndarray
        (B, 1) the query of each window, as :func:`window_queries` gives them: its index into
        ``timestamps``, True, and its time from the window's start (the window's length).
    """
    timestamps = np.asarray(timestamps, dtype=np.float64)
    ready = np.flatnonzero(has_full_context(timestamps, start, end, length))
    starts = timestamps[ready] - length
    relative = (timestamps[ready] - starts).astype(np.float32)
    return starts, ready[:, None], np.ones((len(ready), 1), dtype=bool), relative[:, None]


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


def edge_weights(relative: np.ndarray, length: float, edge: float) -> np.ndarray:
    """Loss weights of training queries for a causal model: ``length / edge`` for those in the last
    ``edge`` seconds of their window (where causal decoding reads), 1 for the others, so that the
    edge weighs about as much as the rest of the window together."""
    return np.where(relative >= length - edge, length / edge, 1.0).astype(np.float32)


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
    at the edges, where the window holds less context. With ``triangular=False`` every weight
    is 1 (causal decoding, where each time is read from its one window, exactly).
    """

    def __init__(self, num_times: int, dim: int, length: float, triangular: bool = True):
        self.total = np.zeros((num_times, dim))
        self.weight = np.zeros(num_times)
        self.length = length
        self.triangular = triangular

    def add(self, index: np.ndarray, mask: np.ndarray, relative: np.ndarray, values: np.ndarray) -> None:
        """Add (B, M, D) ``values`` at (B, M) ``index`` (from :func:`window_queries`)."""
        w = (1.0 - np.abs(2.0 * relative / self.length - 1.0) + 1e-3) if self.triangular else np.ones(mask.shape)
        w = w * mask
        np.add.at(self.total, index[mask], values[mask] * w[mask][:, None])
        np.add.at(self.weight, index[mask], w[mask])

    def result(self) -> np.ndarray:
        """(T, D) blended predictions; NaN where no window covered a time."""
        out = np.full_like(self.total, np.nan)
        covered = self.weight > 0
        out[covered] = self.total[covered] / self.weight[covered][:, None]
        return out
