"""Training sessions: spikes paired with behaviour, checked, split in time, and read
from disk only when training needs them.

A corpus for pretraining can be far larger than memory. :class:`SessionSource` names
a session without reading it; :class:`SessionStore` reads each source once to learn
its units and target statistics, then keeps at most ``max_in_memory`` sessions loaded
(least recently used ones are dropped and read again when needed).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .behavior import Behavior, usable_samples
from .tokens import SpikeTokens, sorting_to_tokens

logger = logging.getLogger(__name__)


@dataclass
class SessionData:
    """One session (one sorting segment) paired with its behaviour, split in time."""

    tokens: SpikeTokens
    behavior: Behavior
    targets: np.ndarray  # (T, D) standardised behaviour, NaN where missing
    mean: np.ndarray
    std: np.ndarray
    train_intervals: np.ndarray  # (K, 2) spans whole windows are sampled from
    val_intervals: np.ndarray

    @property
    def session_id(self) -> str:
        return self.tokens.session_id


@dataclass
class SessionSummary:
    """What training must know about a session without holding its spikes."""

    session_id: str
    unit_ids: list[str]
    train_intervals: np.ndarray
    val_intervals: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    num_missing: int
    behavior: dict  # name, unit, dimension names and rate, see :func:`describe_behavior`
    sampling_frequency: float

    @property
    def num_units(self) -> int:
        return len(self.unit_ids)

    @property
    def train_seconds(self) -> float:
        return float((self.train_intervals[:, 1] - self.train_intervals[:, 0]).sum())


@dataclass
class SessionSource:
    """A session read on demand: ``load()`` returns ``(sorting, behavior)``.

    Parameters
    ----------
    session_id : str
        Name of the session (namespaces its unit ids; names its session embedding).
    load : callable
        Returns the sorting and its behaviour (one :class:`Behavior`, or one per segment).
        Called once to scan the corpus, then again whenever the session left the cache.
    """

    session_id: str
    load: Callable[[], tuple]


def nwb_session(
    path: str | Path,
    behavior: str,
    session_id: str | None = None,
    time_range: tuple[float, float] | None = None,
    intervals=None,
    epochs: str | None = None,
) -> SessionSource:
    """A lazily read NWB session: its units table and one behavioural series.

    Parameters
    ----------
    path : str or Path
        The NWB file.
    behavior : str
        Name or path of the behavioural series (see :func:`list_nwb_behaviors`).
    session_id : str or None
        Defaults to the file name without its suffix.
    time_range : (float, float) or None
        Keep only the behaviour in ``[start, stop)`` seconds.
    intervals : array-like or None
        (K, 2) epochs to keep, in seconds.
    epochs : str or None
        Keep only the epochs of the file's epochs table tagged so (for example ``"run"``).
    """
    path = Path(path)

    def load():
        from .nwb import load_nwb_session

        sorting, target = load_nwb_session(path, behavior)
        if time_range is not None:
            target = target.time_slice(*time_range)
        if intervals is not None:
            target = target.restrict(np.asarray(intervals, dtype=np.float64))
        if epochs is not None:
            from .behavior import read_nwb_epochs

            target = target.restrict(read_nwb_epochs(path, epochs))
        return sorting, target

    return SessionSource(session_id or path.stem, load)


def as_source(item) -> SessionSource:
    """Accept ``(sorting, behavior, session_id)``, a dict with those keys, or a source."""
    if isinstance(item, SessionSource):
        return item
    if isinstance(item, dict):
        sorting, behavior, session_id = item["sorting"], item["behavior"], item["session_id"]
    else:
        sorting, behavior, session_id = item
    return SessionSource(str(session_id), lambda: (sorting, behavior))


def _intersect(intervals: np.ndarray, start: float, stop: float) -> np.ndarray:
    clipped = np.clip(intervals, start, stop)
    return clipped[clipped[:, 1] > clipped[:, 0]]


def inside(times: np.ndarray, intervals: np.ndarray) -> np.ndarray:
    """Which ``times`` fall inside one of the ``[start, stop)`` intervals."""
    keep = np.zeros(len(times), dtype=bool)
    for start, stop in intervals:
        keep |= (times >= start) & (times < stop)
    return keep


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
    return _intersect(intervals, -np.inf, cut), _intersect(intervals, cut, np.inf)


def prepare_session(
    tokens: SpikeTokens,
    behavior: Behavior,
    window: float,
    val_fraction: float = 0.1,
) -> SessionData:
    """Check that spikes and behaviour fit together and split them for training.

    Raises a ``ValueError`` that names the problem when the behaviour is empty, all
    NaN, does not overlap the spikes, or covers less than one window.
    """
    valid = usable_samples(behavior)
    if behavior.num_missing:
        logger.warning(
            "%d of %d samples of %r are NaN; they are left out of training and scoring.",
            behavior.num_missing,
            len(behavior),
            behavior.name,
        )
    span = (tokens.start_time, tokens.end_time)
    intervals = _intersect(behavior.contiguous_intervals(), *span)
    if len(intervals) == 0:
        raise ValueError(
            f"Behaviour {behavior.name!r} ({behavior.start_time:.3f}-{behavior.end_time:.3f} s) does not overlap "
            f"the spikes ({span[0]:.3f}-{span[1]:.3f} s). Are both on the same clock? Shift one of them "
            "(sorting.shift_times or behavior.timestamps) so they line up."
        )
    long_enough = intervals[intervals[:, 1] - intervals[:, 0] >= window]
    if len(long_enough) == 0:
        raise ValueError(
            f"The overlap of spikes and behaviour is shorter than one {window:g} s window "
            f"(longest stretch {np.max(intervals[:, 1] - intervals[:, 0]):.3f} s); provide more data."
        )
    train, val = split_intervals(long_enough, val_fraction)
    if val_fraction > 0 and (len(val) == 0 or (val[:, 1] - val[:, 0]).sum() < window):
        raise ValueError(
            f"The validation part ({val_fraction:.0%} of the data) is shorter than one window; "
            "provide more data or set val_fraction=0."
        )
    train = train[train[:, 1] - train[:, 0] >= window]
    if len(train) == 0:
        raise ValueError("After the validation split no stretch of training data is one window long.")
    train_values = behavior.values[valid & inside(behavior.timestamps, train)]
    mean = train_values.mean(axis=0)
    std = train_values.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return SessionData(tokens, behavior, (behavior.values - mean) / std, mean, std, train, val)


def session_data(sorting, behavior, session_id: str, window: float, val_fraction: float = 0.1) -> list[SessionData]:
    """Pair each segment of a sorting with its behaviour, checked and split in time.

    ``behavior`` is one :class:`Behavior`, or a list with one per segment; statistics
    for standardising the targets are shared by all segments of the session.
    """
    segments = sorting_to_tokens(sorting, session_id=session_id)
    behaviors = list(behavior) if isinstance(behavior, (list, tuple)) else [behavior]
    if len(behaviors) != len(segments):
        raise ValueError(
            f"Session {session_id!r}: the sorting has {len(segments)} segments but {len(behaviors)} behaviour "
            "series were given; pass one Behavior per segment."
        )
    sessions = [prepare_session(t, b, window, val_fraction) for t, b in zip(segments, behaviors)]
    if len(sessions) > 1:
        values = np.concatenate([s.behavior.values[s.behavior.valid] for s in sessions])
        mean, std = values.mean(axis=0), np.where(values.std(axis=0) > 0, values.std(axis=0), 1.0)
        for s in sessions:
            s.mean, s.std, s.targets = mean, std, (s.behavior.values - mean) / std
    return sessions


def describe_behavior(behavior: Behavior) -> dict:
    """JSON description of the readout: name, unit, dimension names and sampling rate."""
    dt = float(np.median(np.diff(behavior.timestamps))) if len(behavior) > 1 else 0.01
    return {
        "name": behavior.name,
        "unit": behavior.unit,
        "dimension_names": behavior.dimension_names,
        "rate": 1.0 / dt,
    }


def summarize(data: SessionData, sampling_frequency: float) -> SessionSummary:
    return SessionSummary(
        session_id=data.session_id,
        unit_ids=list(data.tokens.unit_ids),
        train_intervals=data.train_intervals,
        val_intervals=data.val_intervals,
        mean=data.mean,
        std=data.std,
        num_missing=data.behavior.num_missing,
        behavior=describe_behavior(data.behavior),
        sampling_frequency=sampling_frequency,
    )


class SessionStore:
    """The training segments of a corpus, loaded on demand.

    Each source is read once on construction to check it and learn its units, target
    statistics and train/validation split (:attr:`summaries`, one per sorting segment).
    Afterwards ``store[k]`` returns segment ``k``'s :class:`SessionData`, reading its
    source again when it is not among the ``max_in_memory`` most recently used sessions.

    Parameters
    ----------
    sources : list of SessionSource
        The sessions (see :func:`as_source` and :func:`nwb_session`).
    window : float
        Window length in seconds (stretches shorter than one window are not used).
    val_fraction : float, default: 0.1
        Last fraction of each session's time held out for validation.
    max_in_memory : int or None, default: None
        Sessions kept loaded at once; None keeps all of them.
    """

    def __init__(self, sources, window: float, val_fraction: float = 0.1, max_in_memory: int | None = None):
        if max_in_memory is not None and max_in_memory < 1:
            raise ValueError(f"max_in_memory must be at least 1 (or None for all), got {max_in_memory}.")
        self.sources = [as_source(s) for s in sources]
        self.window, self.val_fraction, self.max_in_memory = window, val_fraction, max_in_memory
        self._cache: OrderedDict[int, list[SessionData]] = OrderedDict()
        self.summaries: list[SessionSummary] = []
        self._segment: list[tuple[int, int]] = []  # (source, segment) of each entry
        self._sampling_frequency: dict[int, float] = {}
        self.num_loads = 0
        for i in range(len(self.sources)):
            for j, data in enumerate(self._load(i)):
                self.summaries.append(summarize(data, self._sampling_frequency[i]))
                self._segment.append((i, j))

    @classmethod
    def from_data(cls, data: list[SessionData]) -> SessionStore:
        """A store of sessions that are already in memory (one source per session id)."""
        store = cls([], window=0.0)
        for session_id in dict.fromkeys(d.session_id for d in data):
            segments = [d for d in data if d.session_id == session_id]
            store.sources.append(SessionSource(session_id, lambda: None))
            i = len(store.sources) - 1
            store._cache[i] = segments
            store._sampling_frequency[i] = float("nan")
            for j, segment in enumerate(segments):
                store.summaries.append(summarize(segment, float("nan")))
                store._segment.append((i, j))
        return store

    def __len__(self) -> int:
        return len(self.summaries)

    def summaries_by_source(self) -> list[list[SessionSummary]]:
        """The summaries grouped by source (one list of segments per session)."""
        grouped: list[list[SessionSummary]] = [[] for _ in self.sources]
        for summary, (i, _) in zip(self.summaries, self._segment):
            grouped[i].append(summary)
        return grouped

    def __getitem__(self, k: int) -> SessionData:
        source, segment = self._segment[k]
        return self._load(source)[segment]

    def _load(self, i: int) -> list[SessionData]:
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        source = self.sources[i]
        sorting, behavior = source.load()
        sorting = getattr(sorting, "sorting", sorting)
        data = session_data(sorting, behavior, source.session_id, self.window, self.val_fraction)
        self._sampling_frequency[i] = float(sorting.sampling_frequency)
        self.num_loads += 1
        self._cache[i] = data
        if self.max_in_memory is not None:
            while len(self._cache) > self.max_in_memory:
                self._cache.popitem(last=False)
        return data

    @property
    def num_in_memory(self) -> int:
        return len(self._cache)
