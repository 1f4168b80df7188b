"""Turn a SpikeInterface sorting into spike tokens.

A sorting becomes, per segment, two flat arrays sorted by time (spike times in
seconds and the index of each spike's unit) read from the spike vector in one go.
Windows are later cut from them with ``searchsorted``: no Python loop ever runs over spikes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np


class TokenType:
    """Token types: each spike, and a start and end token per unit and window."""

    SPIKE = 0
    START = 1
    END = 2


@dataclass
class SpikeTokens:
    """The spikes of one sorting segment, ready to be windowed.

    Attributes
    ----------
    times : np.ndarray
        (S,) spike times in seconds, sorted.
    unit_index : np.ndarray
        (S,) index of each spike's unit into ``unit_ids``.
    unit_ids : list of str
        Namespaced ids ``"{session_id}/{unit_id}"`` of every unit, spiking or not.
    session_id : str
        The session these units belong to.
    start_time, end_time : float
        Span of the segment in seconds.
    unit_properties : dict
        Unit properties of the sorting (``brain_area``, ``location``...), one entry per unit.
    segment_index : int
        The sorting segment these spikes come from.
    """

    times: np.ndarray
    unit_index: np.ndarray
    unit_ids: list[str]
    session_id: str
    start_time: float
    end_time: float
    unit_properties: dict = field(default_factory=dict)
    segment_index: int = 0

    @property
    def num_spikes(self) -> int:
        return len(self.times)

    @property
    def num_units(self) -> int:
        return len(self.unit_ids)


def namespaced_unit_ids(session_id: str, unit_ids) -> list[str]:
    """torch_brain's naming: ``"{session_id}/{unit_id}"``."""
    return [f"{session_id}/{u}" for u in unit_ids]


def sorting_to_tokens(sorting, session_id: str = "session") -> list[SpikeTokens]:
    """Convert every segment of a SpikeInterface sorting into :class:`SpikeTokens`.

    Parameters
    ----------
    sorting : BaseSorting or SortingAnalyzer
        Any SpikeInterface sorting (an analyzer's sorting is used).
    session_id : str, default: "session"
        Prefix that makes unit ids unique across sessions.

    Returns
    -------
    list of SpikeTokens
        One per segment.
    """
    sorting = as_sorting(sorting)
    if sorting.get_num_units() == 0:
        raise ValueError("The sorting has no units; there is nothing to decode from.")
    spikes = sorting.to_spike_vector()
    if len(spikes) == 0:
        raise ValueError(
            "The sorting has no spikes in any unit; check the sorter's output or the time range you sliced."
        )
    unit_ids = namespaced_unit_ids(session_id, sorting.unit_ids)
    properties = {key: sorting.get_property(key) for key in sorting.get_property_keys()}
    fs = sorting.sampling_frequency
    tokens = []
    for seg in range(sorting.get_num_segments()):
        times, unit_index = segment_spikes(sorting, seg, spikes)
        start = float(sorting.get_start_time(segment_index=seg))
        n_samples = sorting.get_num_samples(segment_index=seg) if sorting.has_recording() else None
        end = start + n_samples / fs if n_samples else (float(times[-1]) if len(times) else start)
        if len(times):
            start = min(start, float(times[0]))
            end = max(end, float(times[-1]))
        tokens.append(
            SpikeTokens(
                times=times,
                unit_index=unit_index,
                unit_ids=unit_ids,
                session_id=session_id,
                start_time=start,
                end_time=end,
                unit_properties=properties,
                segment_index=seg,
            )
        )
    return tokens


def segment_spikes(sorting, segment_index: int = 0, spikes=None) -> tuple[np.ndarray, np.ndarray]:
    """(S,) float64 spike times in seconds, sorted, and (S,) unit indices of one segment of a sorting
    (``spikes``: its spike vector, when already read)."""
    spikes = sorting.to_spike_vector() if spikes is None else spikes
    in_seg = spikes[spikes["segment_index"] == segment_index]
    if len(in_seg) == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    times = np.asarray(sorting.sample_index_to_time(in_seg["sample_index"], segment_index=segment_index), np.float64)
    order = np.argsort(times, kind="stable")  # already sorted in practice; cheap to make sure
    return times[order], in_seg["unit_index"][order].astype(np.int64)


def as_sorting(sorting):
    """The sorting of a SortingAnalyzer, or the sorting itself."""
    return getattr(sorting, "sorting", sorting)


def sorting_fingerprint(sorting) -> str:
    """Identity of a sorting's spikes: a sha256 over its unit ids, sampling frequency, and each
    unit's spike count and sum of spike frames per segment.

    Two loads of the same recording give the same fingerprint; another recording, a time
    slice or a subset of units does not. Models record it for every training session, so
    they can tell the sorting they were trained on from another one with the same unit ids.
    """
    sorting = as_sorting(sorting)
    spikes = sorting.to_spike_vector()
    num_units = sorting.get_num_units()
    digest = hashlib.sha256()
    digest.update(repr([str(u) for u in sorting.unit_ids]).encode())
    digest.update(repr(float(sorting.sampling_frequency)).encode())
    for seg in range(sorting.get_num_segments()):
        in_seg = spikes[spikes["segment_index"] == seg]
        counts = np.bincount(in_seg["unit_index"], minlength=num_units).astype(np.int64)
        frames = np.bincount(in_seg["unit_index"], weights=in_seg["sample_index"], minlength=num_units)
        digest.update(counts.tobytes())
        digest.update(np.round(frames).astype(np.int64).tobytes())
    return digest.hexdigest()


def single_segment_tokens(sorting, session_id: str = "session") -> SpikeTokens:
    """The spike tokens of a one-segment sorting (or the tokens themselves)."""
    if isinstance(sorting, SpikeTokens):
        return sorting
    segments = sorting_to_tokens(sorting, session_id)
    if len(segments) > 1:
        raise ValueError(
            f"The sorting has {len(segments)} segments; this decodes one segment at a time. "
            "Select one with sorting.select_segments([i])."
        )
    return segments[0]
