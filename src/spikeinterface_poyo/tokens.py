"""Turn a SpikeInterface sorting into spike tokens, and windows of them into batches.

A sorting becomes, per segment, two flat arrays sorted by time (spike times in
seconds and the index of each spike's unit) read from the spike vector in one go.
Batches are cut from them with ``searchsorted``: no Python loop ever runs over spikes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .model import TokenType


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
    sorting = getattr(sorting, "sorting", sorting)  # accept a SortingAnalyzer
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
        in_seg = spikes[spikes["segment_index"] == seg]
        times = np.asarray(sorting.sample_index_to_time(in_seg["sample_index"], segment_index=seg), dtype=np.float64)
        order = np.argsort(times, kind="stable")  # already sorted in practice; cheap to make sure
        start = float(sorting.get_start_time(segment_index=seg))
        n_samples = sorting.get_num_samples(segment_index=seg) if sorting.has_recording() else None
        end = start + n_samples / fs if n_samples else (float(times[order[-1]]) if len(times) else start)
        if len(times):
            start = min(start, float(times[order[0]]))
            end = max(end, float(times[order[-1]]))
        tokens.append(
            SpikeTokens(
                times=times[order],
                unit_index=in_seg["unit_index"][order].astype(np.int64),
                unit_ids=unit_ids,
                session_id=session_id,
                start_time=start,
                end_time=end,
                unit_properties=properties,
                segment_index=seg,
            )
        )
    return tokens


def _ragged_gather(lo: np.ndarray, hi: np.ndarray, min_width: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``lo[b] .. hi[b]-1`` of each row padded to the longest row, plus the mask."""
    counts = hi - lo
    width = max(int(counts.max(initial=0)), min_width)
    offsets = np.arange(width)
    mask = offsets[None, :] < counts[:, None]
    index = np.where(mask, lo[:, None] + offsets[None, :], 0)
    return index, mask


def collate_spike_windows(
    tokens: SpikeTokens,
    starts: np.ndarray,
    length: float,
    vocab_index: np.ndarray,
    keep_units: np.ndarray | None = None,
) -> dict[str, torch.Tensor]:
    """Pad the spikes of several windows into one batch of model inputs.

    Each window holds, for every unit, a start and an end token followed by the
    window's spikes. Times are relative to the window start.

    Parameters
    ----------
    tokens : SpikeTokens
        The segment to cut windows from.
    starts : np.ndarray
        (B,) window start times in seconds.
    length : float
        Window length in seconds.
    vocab_index : np.ndarray
        (U,) model vocabulary index of each of the segment's units.
    keep_units : np.ndarray or None
        (B, U) boolean; False drops a unit from that window (unit-dropout augmentation).

    Returns
    -------
    dict of Tensor
        ``input_unit_index``, ``input_timestamps``, ``input_token_type`` and
        ``input_mask``, each (B, 2U + max spikes).
    """
    starts = np.asarray(starts, dtype=np.float64)
    num_windows, num_units = len(starts), tokens.num_units
    lo = np.searchsorted(tokens.times, starts, side="left")
    hi = np.searchsorted(tokens.times, starts + length, side="left")
    index, mask = _ragged_gather(lo, hi)
    spike_units = tokens.unit_index[index] if tokens.num_spikes else np.zeros_like(index)
    spike_times = (tokens.times[index] if tokens.num_spikes else np.zeros(index.shape)) - starts[:, None]

    # start/end tokens: unit u has START at 0 and END at `length` in every window
    edge_units = np.broadcast_to(np.repeat(np.arange(num_units), 2), (num_windows, 2 * num_units))
    edge_times = np.broadcast_to(np.tile([0.0, length], num_units), (num_windows, 2 * num_units))
    edge_types = np.tile([TokenType.START, TokenType.END], num_units)
    edge_mask = np.ones((num_windows, 2 * num_units), dtype=bool)
    if keep_units is not None:
        edge_mask = np.repeat(keep_units, 2, axis=1)
        mask = mask & np.take_along_axis(keep_units, spike_units, axis=1)

    local_units = np.concatenate([edge_units, spike_units], axis=1)
    token_types = np.concatenate(
        [np.broadcast_to(edge_types, (num_windows, 2 * num_units)), np.full(index.shape, TokenType.SPIKE)], axis=1
    )
    input_mask = np.concatenate([edge_mask, mask], axis=1)
    unit_index = np.where(input_mask, vocab_index[local_units], 0)
    return dict(
        input_unit_index=torch.from_numpy(unit_index.astype(np.int64)),
        input_timestamps=torch.from_numpy(np.concatenate([edge_times, spike_times], axis=1).astype(np.float32)),
        input_token_type=torch.from_numpy(np.where(input_mask, token_types, 0).astype(np.int64)),
        input_mask=torch.from_numpy(input_mask),
    )


def collate_query_windows(
    timestamps: np.ndarray, starts: np.ndarray, length: float
) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Which of the sorted ``timestamps`` fall in each window.

    Returns
    -------
    index : np.ndarray
        (B, M) index into ``timestamps`` (padded with 0).
    mask : np.ndarray
        (B, M) True for real queries.
    relative_times : Tensor
        (B, M) float32 query times from each window's start.
    """
    starts = np.asarray(starts, dtype=np.float64)
    lo = np.searchsorted(timestamps, starts, side="left")
    hi = np.searchsorted(timestamps, starts + length, side="left")
    index, mask = _ragged_gather(lo, hi)
    relative = np.where(mask, timestamps[index] - starts[:, None], 0.0)
    return index, mask, torch.from_numpy(relative.astype(np.float32))
