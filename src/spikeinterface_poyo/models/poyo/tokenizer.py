"""POYO's input tokens: the spikes of a batch of windows, each unit with a start and an end
token, padded into tensors. Built with ``searchsorted`` on the sorted spike times; no Python
loop ever runs over spikes."""

from __future__ import annotations

import numpy as np
import torch

from ...core.spikes import SpikeTokens, TokenType
from ...core.windows import ragged_gather


def collate_spike_windows(
    tokens: SpikeTokens,
    starts: np.ndarray,
    length: float,
    vocab_index: np.ndarray,
    keep_units: np.ndarray | None = None,
    hidden: np.ndarray | None = None,
    bin_size: float | None = None,
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
    hidden : np.ndarray or None
        (B, T, U) boolean on bins of ``bin_size`` from the window start: True drops the unit's
        tokens in that bin (masked modelling); a start token lies in bin 0, an end token in the
        last bin.
    bin_size : float or None
        Bin width of ``hidden`` in seconds.

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
    index, mask = ragged_gather(lo, hi)
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
    if hidden is not None:
        num_bins = hidden.shape[1]
        rows = np.arange(num_windows)[:, None]
        spike_bins = np.clip(np.floor(spike_times / bin_size + 1e-9).astype(np.int64), 0, num_bins - 1)
        mask = mask & ~hidden[rows, spike_bins, spike_units]
        edge_bins = np.tile([0, num_bins - 1], num_units)
        edge_mask = edge_mask & ~hidden[rows, edge_bins[None, :], edge_units]

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


def encoder_inputs(model, collated: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Collated token tensors on the model's device, with the latent tokens of as many windows."""
    latent_index, latent_timestamps = model.latent_tokens(len(collated["input_mask"]))
    batch = {k: v.to(model.device) for k, v in collated.items()}
    batch.update(latent_index=latent_index, latent_timestamps=latent_timestamps)
    return batch
