"""A recording streamed chunk by chunk into a :class:`~spikeinterface_poyo.StreamingDecoder`:
the threshold crossings of each chunk, detected as :func:`~.threshold.threshold_crossings` detects
them on the whole recording, pushed as they are found."""

from __future__ import annotations

import numpy as np

from .threshold import check_arguments, checked_noise_levels, detect_crossings, filtered


def push_recording_chunk(
    decoder,
    recording,
    start_frame: int,
    end_frame: int,
    *,
    noise_levels,
    threshold: float = -4.5,
    freq_min: float = 300.0,
    freq_max: float = 6000.0,
    refractory_ms: float = 1.0,
    filter: bool = True,
    segment_index: int = 0,
):
    """Detect the threshold crossings in frames ``[start_frame, end_frame)`` and push them.

    The crossings are those :func:`~spikeinterface_poyo.threshold_crossings` finds with the same
    settings and noise levels on the whole recording: detection reads one refractory period past
    each edge of the chunk (and the band-pass filter its usual margin), so a crossing is decided
    with the samples around it even at a chunk's edge. A live system has those samples a
    refractory period (plus the filter's margin) later.

    Parameters
    ----------
    decoder : StreamingDecoder
        The stream, whose ``unit_ids`` are the recording's channel ids (a model trained on
        threshold crossings).
    recording : BaseRecording
        The recording (raw, or filtered with ``filter=False``).
    start_frame, end_frame : int
        The chunk, in samples of ``segment_index``; chunks must follow one another.
    noise_levels : array_like
        Noise of each channel, fixed for the whole stream (the chunk is too short to estimate it):
        for example ``sip.threshold_crossings(calibration).get_property("noise_level")`` on a
        first stretch of recording.
    threshold, freq_min, freq_max, refractory_ms, filter
        As for :func:`~spikeinterface_poyo.threshold_crossings`.
    segment_index : int, default: 0
        The recording segment.

    Returns
    -------
    StreamPredictions
        The predictions that became due (see :meth:`StreamingDecoder.push`).
    """
    fs = recording.sampling_frequency
    check_arguments(threshold, freq_min, freq_max, refractory_ms, fs)
    num_samples = recording.get_num_samples(segment_index=segment_index)
    start_frame, end_frame = int(start_frame), int(end_frame)
    if not 0 <= start_frame < end_frame <= num_samples:
        raise ValueError(
            f"The chunk [{start_frame}, {end_frame}) is not a stretch of the segment's {num_samples} samples; "
            "give 0 <= start_frame < end_frame <= num_samples."
        )
    noise_levels = checked_noise_levels(noise_levels, recording, warn=False)
    traces = filtered(recording, freq_min, freq_max) if filter else recording
    if recording.get_num_segments() > 1:
        traces = traces.select_segments([segment_index])
    # a crossing is the extremum within a refractory period on either side: read that much around the chunk
    pad = int(np.ceil(refractory_ms * fs / 1000.0)) + 1
    lo, hi = max(start_frame - pad, 0), min(end_frame + pad, num_samples)
    job_kwargs = dict(n_jobs=1, chunk_size=hi - lo, progress_bar=False)  # one short chunk: no workers
    spikes = detect_crossings(traces.frame_slice(lo, hi), threshold, refractory_ms, noise_levels, job_kwargs)
    frames = spikes["sample_index"] + lo
    keep = (frames >= start_frame) & (frames < end_frame)
    times = recording.sample_index_to_time(frames[keep], segment_index=segment_index) if keep.any() else np.zeros(0)
    ids = np.asarray([str(c) for c in recording.channel_ids])[spikes["unit_index"][keep]]
    return decoder.push(
        times,
        ids,
        start_time=_frame_time(recording, start_frame, segment_index),
        end_time=_frame_time(recording, end_frame, segment_index),
    )


def _frame_time(recording, frame: int, segment_index: int) -> float:
    """Time of a sample; of the sample after the last one for ``frame == num_samples``."""
    last = recording.get_num_samples(segment_index=segment_index) - 1
    time = float(recording.sample_index_to_time(min(frame, last), segment_index=segment_index))
    return time + (frame - last) / recording.sampling_frequency if frame > last else time
