"""Threshold crossings: one "unit" per channel, the way BCI datasets bin multi-unit activity.

Built on SpikeInterface's own pieces: :func:`spikeinterface.preprocessing.bandpass_filter`,
:func:`spikeinterface.core.get_noise_levels` (median absolute deviation) and
:func:`spikeinterface.sortingcomponents.peak_detection.detect_peaks` with the ``"by_channel"``
method, so it runs chunked with the usual ``n_jobs`` / ``chunk_duration`` / ``progress_bar``
job kwargs.
"""

from __future__ import annotations

import warnings

import numpy as np

# channel properties that describe the recording's storage, not the electrode: not carried over
_SKIPPED_CHANNEL_PROPERTIES = ("contact_vector", "gain_to_uV", "offset_to_uV", "gain_to_physical_unit")


def threshold_crossings(
    recording,
    threshold: float = -4.5,
    freq_min: float = 300.0,
    freq_max: float = 6000.0,
    refractory_ms: float = 1.0,
    filter: bool = True,
    noise_levels=None,
    seed: int | None = 0,
    **job_kwargs,
):
    """Detect threshold crossings on every channel: a sorting with one unit per channel.

    The noise of each channel is its median absolute deviation (scaled to a standard
    deviation), estimated on random chunks. A channel "spikes" where its (band-pass filtered)
    signal crosses ``threshold × noise`` and is the extremum within ``refractory_ms`` on either
    side, so two crossings of one channel are always more than a refractory period apart.

    Parameters
    ----------
    recording : BaseRecording
        The raw (or already filtered, see ``filter``) recording.
    threshold : float, default: -4.5
        Threshold in multiples of the noise. Negative detects negative deflections (the usual
        BCI setting), positive detects positive ones.
    freq_min : float, default: 300
        High-pass corner of the band-pass filter in Hz.
    freq_max : float, default: 6000
        Low-pass corner in Hz; lowered to 95% of the Nyquist frequency when above it.
    refractory_ms : float, default: 1.0
        Minimum time between two crossings of the same channel, in ms.
    filter : bool, default: True
        Band-pass filter first. Set False for a recording that is already filtered.
    noise_levels : array_like or None, default: None
        Noise of each channel in the (filtered) traces' units; estimated when None.
    seed : int or None, default: 0
        Seed of the random chunks the noise is estimated on.
    **job_kwargs
        ``n_jobs``, ``chunk_duration``, ``progress_bar``... as for any SpikeInterface job.

    Returns
    -------
    sorting : NumpySorting
        One unit per channel, with the channel ids as unit ids and the recording registered.
        Unit properties: ``channel_id``, ``location`` (when the recording has channel
        locations), ``noise_level`` and ``threshold`` (both in the filtered traces' units), and
        every other channel property of the recording (``brain_area``, ``group``...).
    """
    from spikeinterface.core import NumpySorting, get_noise_levels
    from spikeinterface.core.job_tools import fix_job_kwargs

    fs = recording.sampling_frequency
    check_arguments(threshold, freq_min, freq_max, refractory_ms, fs)
    job_kwargs = fix_job_kwargs(job_kwargs)
    traces = filtered(recording, freq_min, freq_max) if filter else recording

    if noise_levels is None:
        noise_levels = get_noise_levels(
            traces, return_in_uV=False, method="mad", random_slices_kwargs=dict(seed=seed), **job_kwargs
        )
    noise_levels = checked_noise_levels(noise_levels, recording)
    spikes = detect_crossings(traces, threshold, refractory_ms, noise_levels, job_kwargs)
    sorting = NumpySorting(spikes, fs, recording.channel_ids)
    # registered so that spike times follow the recording's clock (t_start, time vectors)
    sorting.register_recording(recording)
    _carry_channel_properties(recording, sorting)
    sorting.set_property("noise_level", noise_levels)
    sorting.set_property("threshold", threshold * noise_levels)
    sorting.annotate(
        threshold_crossings=dict(
            threshold=float(threshold),
            freq_min=float(freq_min) if filter else None,
            freq_max=float(freq_max) if filter else None,
            refractory_ms=float(refractory_ms),
        )
    )
    return sorting


def checked_noise_levels(noise_levels, recording, warn: bool = True) -> np.ndarray:
    """One noise level per channel as float64; a flat or dead channel's (0) made infinite, so that
    it never crosses (with a warning)."""
    noise_levels = np.asarray(noise_levels, dtype=np.float64)
    if noise_levels.shape != (recording.get_num_channels(),):
        raise ValueError(f"noise_levels needs one value per channel ({recording.get_num_channels()}).")
    if np.any(noise_levels <= 0):
        if warn:
            dead = recording.channel_ids[noise_levels <= 0]
            warnings.warn(f"Channels {list(dead)} have zero noise (flat or dead); they never cross.", stacklevel=3)
        noise_levels = np.where(noise_levels > 0, noise_levels, np.inf)
    return noise_levels


def detect_crossings(traces, threshold: float, refractory_ms: float, noise_levels: np.ndarray, job_kwargs: dict):
    """The crossings of (filtered) ``traces``: a spike vector (sample, channel as unit, segment),
    sorted by segment, sample and channel."""
    from spikeinterface.core.base import minimum_spike_dtype
    from spikeinterface.sortingcomponents.peak_detection import detect_peaks

    peaks = detect_peaks(
        traces,
        method="by_channel",
        method_kwargs=dict(
            peak_sign="neg" if threshold < 0 else "pos",
            detect_threshold=abs(threshold),
            exclude_sweep_ms=refractory_ms,
            noise_levels=noise_levels,
        ),
        job_kwargs=job_kwargs,
    )
    order = np.lexsort((peaks["channel_index"], peaks["sample_index"], peaks["segment_index"]))
    spikes = np.zeros(len(peaks), dtype=minimum_spike_dtype)
    spikes["sample_index"] = peaks["sample_index"][order]
    spikes["unit_index"] = peaks["channel_index"][order]
    spikes["segment_index"] = peaks["segment_index"][order]
    return spikes


def check_arguments(threshold, freq_min, freq_max, refractory_ms, fs) -> None:
    if threshold == 0 or not np.isfinite(threshold):
        raise ValueError(f"threshold must be a non-zero multiple of the noise (e.g. -4.5), got {threshold}.")
    if refractory_ms * fs / 1000.0 < 1:
        raise ValueError(
            f"refractory_ms={refractory_ms} is shorter than one sample at {fs:g} Hz; use at least {1000.0 / fs:.3f} ms."
        )
    if not 0 < freq_min < freq_max:
        raise ValueError(f"Need 0 < freq_min < freq_max, got freq_min={freq_min}, freq_max={freq_max}.")
    if freq_min >= 0.95 * fs / 2:
        raise ValueError(f"freq_min={freq_min} Hz is above the Nyquist frequency of a {fs:g} Hz recording.")


def filtered(recording, freq_min: float = 300.0, freq_max: float = 6000.0):
    """The recording band-pass filtered as :func:`threshold_crossings` filters it (lazily)."""
    from spikeinterface.preprocessing import bandpass_filter

    nyquist = recording.sampling_frequency / 2
    # a recording at 10 kHz cannot hold 6 kHz: keep the filter valid rather than fail
    freq_max = min(freq_max, 0.95 * nyquist)
    return bandpass_filter(recording, freq_min=freq_min, freq_max=freq_max, dtype="float32")


def _carry_channel_properties(recording, sorting) -> None:
    """Copy the channels' locations and other properties onto the per-channel units."""
    sorting.set_property("channel_id", np.asarray(recording.channel_ids))
    if recording.has_probe() or "location" in recording.get_property_keys():
        sorting.set_property("location", recording.get_channel_locations())
    else:
        warnings.warn(
            "The recording has no channel locations (no probe attached); the threshold-crossing units get no "
            "'location' property. Attach one with recording.set_probe(...) or "
            "recording.set_dummy_probe_from_locations(...) to keep it.",
            stacklevel=3,
        )
    for key in recording.get_property_keys():
        if key in _SKIPPED_CHANNEL_PROPERTIES or key == "location" or key.startswith("noise_level_"):
            continue
        sorting.set_property(key, recording.get_property(key))
