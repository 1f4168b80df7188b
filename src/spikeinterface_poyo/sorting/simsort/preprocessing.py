"""What SimSort does to a recording before detecting: band-pass, z-score and whiten (the
reference's chain), with the checks that refuse recordings it cannot sort."""

from __future__ import annotations

import numpy as np

#: The reference's band, Hz (the upper edge is lowered below Nyquist for slower recordings).
BAND_HZ = (250.0, 10000.0)


def check_tetrode_recording(recording, num_channels: int = 4) -> None:
    """Refuse what SimSort cannot sort: fewer channels than a tetrode, or a flat recording."""
    n = recording.get_num_channels()
    if n < num_channels:
        raise ValueError(
            f"SimSort sorts tetrodes: the recording has {n} channels, fewer than {num_channels}. Sort it with a "
            "sorter for single channels or stereotrodes (for example run_sorter('simple', ...))."
        )


def preprocess(recording, band_hz: tuple[float, float] = BAND_HZ):
    """The recording band-passed, z-scored per channel and whitened across channels (lazy).

    The band's upper edge is kept below 0.45 of the sampling rate.
    """
    from spikeinterface.preprocessing import bandpass_filter, whiten, zscore

    high = min(band_hz[1], 0.45 * recording.get_sampling_frequency())
    filtered = bandpass_filter(recording, freq_min=band_hz[0], freq_max=high, dtype="float32")
    return whiten(zscore(filtered), mode="global", dtype="float32", int_scale=None)


def check_not_flat(traces: np.ndarray) -> None:
    """Refuse traces with no signal or stuck at one value on a channel (all zero, saturated)."""
    spread = np.ptp(traces, axis=0)
    if np.any(spread == 0):
        flat = np.flatnonzero(spread == 0).tolist()
        raise ValueError(
            f"Channels {flat} of the recording are constant (all zero or saturated): there is nothing to detect "
            "on them. Remove those channels (recording.remove_channels) or check the acquisition."
        )
