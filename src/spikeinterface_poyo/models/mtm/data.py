"""Binned spike counts of one session, split into contiguous blocks (or trials) for training,
validation and test: the input of the masked models.

Continuous recordings are cut into a training block (the first ``1 - test_fraction`` of the
time, its last ``val_fraction`` held out for early stopping) and a test block (the rest), the
splits of the POYO benchmarks. With event times (an NWB ``trials`` table or an array), each
event gives one window of ``num_bins`` bins starting ``event_offset`` seconds from it, and the
events are split in time order the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ...core.binning import count_matrix
from ...core.spikes import as_sorting, single_segment_tokens, sorting_fingerprint

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass
class BinnedSession:
    """Spike counts of one session, ready for masked modelling.

    Attributes
    ----------
    session_id : str
        The session's name (the key of its stitchers in a model).
    unit_ids : list of str
        Unit ids as the sorting has them, one per column of the counts.
    brain_area : np.ndarray or None
        (N,) region label of each unit (the sorting's ``brain_area`` property), if it has one.
    bin_size : float
        Bin width in seconds.
    num_bins : int
        Bins per window.
    segments : dict
        Split name -> list of (S, N) float32 count arrays of contiguous bins (a block of a
        continuous recording, or one trial's window).
    segment_starts : dict
        Split name -> start time in seconds of each segment's first bin.
    fingerprint : str
        :func:`~spikeinterface_poyo.core.spikes.sorting_fingerprint` of the sorting.
    """

    session_id: str
    unit_ids: list[str]
    brain_area: np.ndarray | None
    bin_size: float
    num_bins: int
    segments: dict
    segment_starts: dict
    fingerprint: str

    @property
    def num_units(self) -> int:
        return len(self.unit_ids)

    def mean_counts(self, split: str = "train") -> np.ndarray:
        """(N,) each unit's mean count per bin over the split's bins."""
        segments = self.segments[split]
        if not segments:
            return np.zeros(self.num_units, np.float64)
        return np.concatenate(segments).mean(axis=0, dtype=np.float64)

    def num_windows(self, split: str) -> int:
        """Non-overlapping windows that tile the split."""
        return sum(len(s) // self.num_bins for s in self.segments[split])

    def windows(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(W, num_bins, N) non-overlapping windows tiling each segment of ``split`` from its
        start, and (W,) the time of each window's first bin."""
        counts, starts = [], []
        for segment, t0 in zip(self.segments[split], self.segment_starts[split]):
            n = len(segment) // self.num_bins
            counts.append(segment[: n * self.num_bins].reshape(n, self.num_bins, -1))
            starts.append(t0 + np.arange(n) * self.num_bins * self.bin_size)
        if not counts:
            return np.zeros((0, self.num_bins, self.num_units), np.float32), np.zeros(0)
        return np.concatenate(counts), np.concatenate(starts)

    def sample(self, split: str, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, num_bins, N) windows at random offsets inside the split's segments."""
        lengths = np.array([len(s) - self.num_bins + 1 for s in self.segments[split]])
        if lengths.sum() <= 0:
            raise ValueError(f"Session {self.session_id!r} has no {split} window of {self.num_bins} bins.")
        starts = rng.integers(0, lengths.sum(), n)
        which = np.searchsorted(np.cumsum(lengths), starts, side="right")
        offsets = starts - np.concatenate([[0], np.cumsum(lengths)])[which]
        return np.stack([self.segments[split][w][o : o + self.num_bins] for w, o in zip(which, offsets)])


def _event_times(events, event_column: str) -> np.ndarray:
    """Event times in seconds from an array, a pandas DataFrame or a pynwb/hdmf table."""
    if hasattr(events, "to_dataframe"):  # pynwb TimeIntervals (an NWB trials table)
        events = events.to_dataframe()
    if hasattr(events, "columns"):
        if event_column not in events.columns:
            raise ValueError(
                f"The trials table has no column {event_column!r}; its columns are {list(events.columns)}. "
                "Pass event_column= naming the event to align windows to."
            )
        events = events[event_column].to_numpy()
    times = np.asarray(events, dtype=np.float64).ravel()
    if len(times) == 0 or not np.all(np.isfinite(times)):
        raise ValueError("The event times are empty or hold NaN/inf; give finite times in seconds.")
    return np.sort(times)


def bin_session(
    sorting,
    session_id: str | None = None,
    bin_size: float = 0.02,
    num_bins: int = 100,
    events=None,
    event_column: str = "start_time",
    event_offset: float = -0.5,
    test_fraction: float = 0.3,
    val_fraction: float = 0.1,
    time_range: tuple[float, float] | None = None,
) -> BinnedSession:
    """Bin a one-segment sorting into counts for masked modelling.

    Parameters
    ----------
    sorting : BaseSorting or SortingAnalyzer
        The spikes. Region labels come from its ``brain_area`` unit property, if present.
    session_id : str or None
        Name of the session; the first 12 characters of its fingerprint by default.
    bin_size : float, default: 0.02
        Bin width in seconds (MtM's 20 ms; 50 ms suits slower data).
    num_bins : int, default: 100
        Bins per window (100 x 20 ms = 2 s, as MtM).
    events : array_like, DataFrame, pynwb TimeIntervals or None
        Event times (or a trials table): one window per event instead of contiguous blocks.
    event_column : str, default: "start_time"
        Column of a trials table holding the event times.
    event_offset : float, default: -0.5
        Start of each event's window relative to the event, in seconds.
    test_fraction : float, default: 0.3
        Last fraction of the time (or of the events) held out for testing.
    val_fraction : float, default: 0.1
        Last fraction of the training part held out for early stopping.
    time_range : (float, float) or None
        Seconds of the recording to use (for example from its first spike); all of it by default.

    Returns
    -------
    BinnedSession
    """
    if not bin_size > 0:
        raise ValueError(f"bin_size must be positive, got {bin_size}.")
    if int(num_bins) != num_bins or num_bins < 2:
        raise ValueError(
            f"num_bins must be an integer of at least 2 (a window holds num_bins bins of bin_size), got {num_bins}; "
            "a bin as long as the whole window leaves nothing to mask in time."
        )
    if not 0 < test_fraction < 1 or not 0 <= val_fraction < 1:
        raise ValueError(f"Need 0 < test_fraction < 1 and 0 <= val_fraction < 1, got {test_fraction}, {val_fraction}.")
    num_bins = int(num_bins)
    tokens = single_segment_tokens(as_sorting(sorting))
    fingerprint = sorting_fingerprint(as_sorting(sorting))
    session_id = str(session_id) if session_id is not None else fingerprint[:12]
    unit_ids = [u.split("/", 1)[1] for u in tokens.unit_ids]
    area = tokens.unit_properties.get("brain_area")
    area = None if area is None else np.asarray(area).astype(str)
    window = num_bins * bin_size
    start, end = tokens.start_time, tokens.end_time
    if time_range is not None:
        start, end = max(start, float(time_range[0])), min(end, float(time_range[1]))
    span = end - start
    if window > span:
        raise ValueError(
            f"A window of {num_bins} bins of {bin_size * 1e3:g} ms ({window:g} s) is longer than the session "
            f"({span:.3g} s); use fewer bins (num_bins=) or shorter ones (bin_size=)."
        )
    segments = {s: [] for s in SPLITS}
    starts = {s: [] for s in SPLITS}
    silent = np.bincount(tokens.unit_index, minlength=tokens.num_units) == 0
    if silent.any():
        logger.info("%d units of session %s never fire; they are kept (and left out of bits per spike).",
                    silent.sum(), session_id)  # fmt: skip

    def add(split, t0, length):
        segments[split].append(count_matrix(tokens.times, tokens.unit_index, tokens.num_units, t0, bin_size, length))
        starts[split].append(float(t0))

    if events is None:
        test_start = start + (1 - test_fraction) * span
        val_start = start + (1 - test_fraction) * (1 - val_fraction) * span
        blocks = {"train": (start, val_start), "val": (val_start, test_start), "test": (test_start, end)}
        for split, (t0, t1) in blocks.items():
            length = int(np.floor((t1 - t0) / bin_size + 1e-9))
            if length >= num_bins:
                add(split, t0, length)
        for split in ("train", "test"):
            if not segments[split]:
                raise ValueError(
                    f"The {split} block of session {session_id!r} is shorter than one window ({window:g} s); "
                    "use a longer recording or shorter windows."
                )
    else:
        times = _event_times(events, event_column) + event_offset
        inside = (times >= start) & (times + window <= end + bin_size)
        if not inside.all():
            logger.warning("%d of %d event windows reach outside the spikes' span and are dropped.",
                           (~inside).sum(), len(times))  # fmt: skip
        times = times[inside]
        if len(times) < 3:
            raise ValueError(
                f"Only {len(times)} event windows lie inside the spikes' span ({start:.3g}-{end:.3g} s); are the "
                "event times in seconds on the sorting's clock?"
            )
        n_test = max(1, int(round(test_fraction * len(times))))
        n_val = int(round(val_fraction * (len(times) - n_test))) if val_fraction > 0 else 0
        n_train = len(times) - n_test - n_val
        labels = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
        for split, t0 in zip(labels, times):
            add(split, t0, num_bins)
    return BinnedSession(session_id, unit_ids, area, float(bin_size), num_bins, segments, starts, fingerprint)
