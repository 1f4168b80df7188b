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

import numpy as np

from .behavior import Behavior, usable_samples
from .intervals import inside, intersect, split_intervals, total_seconds
from .spikes import SpikeTokens, as_sorting, sorting_fingerprint, sorting_to_tokens

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
    fingerprint: str | None = None  # of the session's sorting, see :func:`sorting_fingerprint`

    @property
    def num_units(self) -> int:
        return len(self.unit_ids)

    @property
    def train_seconds(self) -> float:
        return total_seconds(self.train_intervals)


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


def as_source(item) -> SessionSource:
    """Accept ``(sorting, behavior, session_id)``, a dict with those keys, or a source."""
    if isinstance(item, SessionSource):
        return item
    if isinstance(item, dict):
        sorting, behavior, session_id = item["sorting"], item["behavior"], item["session_id"]
    else:
        sorting, behavior, session_id = item
    return SessionSource(str(session_id), lambda: (sorting, behavior))


def no_overlap_error(behavior: Behavior, tokens: SpikeTokens) -> ValueError:
    """The error for behaviour that does not overlap the spikes in time."""
    return ValueError(
        f"Behaviour {behavior.name!r} ({behavior.start_time:.3f}-{behavior.end_time:.3f} s) does not overlap "
        f"the spikes ({tokens.start_time:.3f}-{tokens.end_time:.3f} s). Are both on the same clock? Shift one of "
        "them (sorting.shift_times or behavior.timestamps) so they line up."
    )


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
    intervals = intersect(behavior.contiguous_intervals(), *span)
    if len(intervals) == 0:
        raise no_overlap_error(behavior, tokens)
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


def summarize(data: SessionData, sampling_frequency: float, fingerprint: str | None = None) -> SessionSummary:
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
        fingerprint=fingerprint,
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
        self._fingerprint: dict[int, str | None] = {}
        self.num_loads = 0
        for i in range(len(self.sources)):
            for j, data in enumerate(self._load(i)):
                self.summaries.append(summarize(data, self._sampling_frequency[i], self._fingerprint[i]))
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
        sorting = as_sorting(sorting)
        data = session_data(sorting, behavior, source.session_id, self.window, self.val_fraction)
        self._sampling_frequency[i] = float(sorting.sampling_frequency)
        if i not in self._fingerprint:  # once, when the corpus is scanned
            self._fingerprint[i] = sorting_fingerprint(sorting)
        self.num_loads += 1
        self._cache[i] = data
        if self.max_in_memory is not None:
            while len(self._cache) > self.max_in_memory:
                self._cache.popitem(last=False)
        return data

    @property
    def num_in_memory(self) -> int:
        return len(self._cache)


class UnknownSessionError(ValueError):
    """The sorting cannot be matched to a session the model was trained on."""


#: how the errors below tell a user to adapt a model to new units (a family can say otherwise)
FINETUNE = "sip.finetune(model, sorting, behavior, session_id='new_session')"


def resolve_session(
    session_units: dict[str, list[str]], fingerprints: dict, sorting, session_id=None, adaptation: str = FINETUNE
) -> str:
    """The session a sorting is decoded as, checked against what the model knows.

    With ``session_id`` the session must be one of the model's and the sorting's units must be
    among that session's. Without it the sorting must be one of the model's training sessions,
    recognised by its :func:`~spikeinterface_poyo.core.spikes.sorting_fingerprint`: unit ids
    alone are not enough (every sorter numbers its units 0, 1, 2...), so another recording is
    never decoded silently.

    Parameters
    ----------
    session_units : dict
        Session id -> unit ids, of every session the model can decode.
    fingerprints : dict
        Session id -> fingerprint of the sorting it was trained on (where known).
    sorting : BaseSorting or SortingAnalyzer
        The sorting to decode.
    session_id : str or None
        The session the caller says this is.
    adaptation : str
        The call that adapts the model to new units, named in the errors.
    """
    sessions = list(session_units)
    sorting = as_sorting(sorting)
    if session_id is None:
        fingerprint = sorting_fingerprint(sorting)
        matches = [s for s in sessions if fingerprints.get(s) == fingerprint]
        if len(matches) != 1:
            listed = sessions if len(sessions) <= 8 else sessions[:8] + ["..."]
            raise UnknownSessionError(
                f"This sorting is not one the model was trained on: its spikes match none of the model's "
                f"{len(sessions)} sessions {listed}. If it is a recording of one of them (a time slice, a subset "
                "of its units, the same units read from another file), say which with session_id='...' "
                f"(--session-id on the command line); for a new recording, adapt the model to its units with "
                f"{adaptation}."
            )
        session_id = matches[0]
    session_id = str(session_id)
    if session_id not in session_units:
        raise UnknownSessionError(
            f"session_id={session_id!r} is not a session this model knows; it knows {sessions}. Adapt the model "
            f"to a new session with {adaptation}."
        )
    known = set(map(str, session_units[session_id]))
    unknown = [str(u) for u in sorting.unit_ids if str(u) not in known]
    if unknown:
        raise UnknownSessionError(
            f"{len(unknown)} of the sorting's {sorting.get_num_units()} units are not units of session "
            f"{session_id!r} (e.g. {unknown[0]!r}); decode the sorting that session was recorded with, or a subset "
            f"of its units, or adapt the model to these units with {adaptation}."
        )
    return session_id


def normalization(data) -> dict:
    """Per-session target statistics (of :class:`SessionData` or summaries), JSON-ready."""
    return {s.session_id: {"mean": np.asarray(s.mean).tolist(), "std": np.asarray(s.std).tolist()} for s in data}
