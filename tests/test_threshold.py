"""Threshold crossings: one unit per channel, MAD noise, refractory period, channel metadata."""

import numpy as np
import pytest
from spikeinterface.core import NumpyRecording

import spikeinterface_poyo as sip
from spikeinterface_poyo.simulation import simulate_recording

FS = 10000.0


def spiky_recording(spikes, duration=20.0, num_channels=4, noise=10.0, amplitude=100.0, seed=0, t_start=None):
    """Gaussian noise with sharp negative deflections at ``spikes = [(sample, channel), ...]``."""
    rng = np.random.default_rng(seed)
    traces = rng.normal(0.0, noise, (int(duration * FS), num_channels)).astype("float32")
    for sample, channel in spikes:
        traces[sample - 1 : sample + 2, channel] -= amplitude * np.array([0.3, 1.0, 0.3], dtype="float32")
    recording = NumpyRecording([traces], FS, channel_ids=[f"ch{c}" for c in range(num_channels)])
    if t_start is not None:
        recording = NumpyRecording([traces], FS, t_starts=[t_start], channel_ids=recording.channel_ids)
    recording.set_dummy_probe_from_locations(np.column_stack([np.zeros(num_channels), 100.0 * np.arange(num_channels)]))
    recording.set_property("brain_area", np.array(["M1", "M1", "PMd", "PMd"][:num_channels]))
    return recording


def known_spikes(num=40, num_channels=4, seed=1):
    rng = np.random.default_rng(seed)
    samples = np.sort(rng.choice(np.arange(100, int(19.9 * FS), 50), size=num, replace=False))
    return list(zip(samples, rng.integers(num_channels, size=num)))


def test_finds_the_crossings_one_unit_per_channel_with_channel_metadata():
    spikes = known_spikes()
    recording = spiky_recording(spikes)
    sorting = sip.threshold_crossings(recording, threshold=-5.5, filter=False, progress_bar=False)

    assert list(sorting.unit_ids) == list(recording.channel_ids)
    for c, channel in enumerate(recording.channel_ids):
        expected = sorted(s for s, ch in spikes if ch == c)
        np.testing.assert_array_equal(sorting.get_unit_spike_train(channel), expected)
    np.testing.assert_array_equal(sorting.get_property("location"), recording.get_channel_locations())
    np.testing.assert_array_equal(sorting.get_property("brain_area"), ["M1", "M1", "PMd", "PMd"])
    np.testing.assert_array_equal(sorting.get_property("channel_id"), recording.channel_ids)
    noise = sorting.get_property("noise_level")
    np.testing.assert_allclose(noise, 10.0, rtol=0.1)  # the MAD of Gaussian noise is its std
    np.testing.assert_allclose(sorting.get_property("threshold"), -5.5 * noise)
    assert sorting.get_annotation("threshold_crossings")["threshold"] == -5.5

    # the properties travel with the tokens
    (tokens,) = sip.sorting_to_tokens(sorting, session_id="array")
    np.testing.assert_array_equal(tokens.unit_properties["brain_area"], ["M1", "M1", "PMd", "PMd"])
    assert tokens.unit_properties["location"].shape == (4, 2)


def test_refractory_period_keeps_one_of_two_close_crossings():
    recording = spiky_recording([(5000, 0), (5005, 0), (9000, 1)])  # 0.5 ms apart on channel 0
    one_ms = sip.threshold_crossings(recording, threshold=-5.5, filter=False, refractory_ms=1.0, progress_bar=False)
    assert len(one_ms.get_unit_spike_train("ch0")) == 1
    short = sip.threshold_crossings(recording, threshold=-5.5, filter=False, refractory_ms=0.3, progress_bar=False)
    np.testing.assert_array_equal(short.get_unit_spike_train("ch0"), [5000, 5005])


def test_positive_threshold_detects_positive_deflections():
    recording = spiky_recording([(3000, 2)], amplitude=-100.0)  # an upward spike
    assert (
        sip.threshold_crossings(recording, threshold=-5.5, filter=False, progress_bar=False).to_spike_vector().size == 0
    )
    positive = sip.threshold_crossings(recording, threshold=5.5, filter=False, progress_bar=False)
    np.testing.assert_array_equal(positive.get_unit_spike_train("ch2"), [3000])


def test_chunked_jobs_give_the_same_sorting_and_times_follow_the_recording_clock():
    recording = spiky_recording(known_spikes(), t_start=100.0)
    one = sip.threshold_crossings(recording, threshold=-5.5, filter=False, progress_bar=False)
    two = sip.threshold_crossings(
        recording, threshold=-5.5, filter=False, n_jobs=2, chunk_duration="3s", pool_engine="thread", progress_bar=False
    )
    np.testing.assert_array_equal(one.to_spike_vector(), two.to_spike_vector())
    times = one.get_unit_spike_train("ch1", return_times=True)
    assert times.min() >= 100.0
    (tokens,) = sip.sorting_to_tokens(one)
    assert tokens.start_time == pytest.approx(100.0)


def test_filtered_crossings_of_a_simulated_recording_match_the_true_units():
    recording, true_sorting, _ = simulate_recording(duration=10.0, num_channels=8, seed=2)
    sorting = sip.threshold_crossings(recording, progress_bar=False)
    main_channel = true_sorting.get_property("main_channel_id")
    for unit, channel in zip(true_sorting.unit_ids, main_channel):
        true_train = true_sorting.get_unit_spike_train(unit)
        found = sorting.get_unit_spike_train(channel)
        # each true spike has a crossing within 1 ms (the filter shifts the trough a little)
        nearest = np.abs(found[np.clip(np.searchsorted(found, true_train), 0, len(found) - 1)] - true_train)
        previous = np.abs(found[np.clip(np.searchsorted(found, true_train) - 1, 0, len(found) - 1)] - true_train)
        matched = np.minimum(nearest, previous) <= 0.001 * recording.sampling_frequency
        assert matched.mean() > 0.9, (unit, channel, matched.mean())
        assert len(found) < 1.2 * len(true_train)


def test_multi_segment_recording_gives_a_multi_segment_sorting():
    recording, _, _ = simulate_recording(duration=4.0, num_channels=4, seed=3)
    from spikeinterface.core import append_recordings

    half = recording.get_num_samples() // 2
    both = append_recordings([recording.frame_slice(0, half), recording.frame_slice(half, 2 * half)])
    sorting = sip.threshold_crossings(both, progress_bar=False)
    assert sorting.get_num_segments() == 2
    assert all(len(sorting.get_unit_spike_train(sorting.unit_ids[0], segment_index=s)) > 0 for s in range(2))


def test_recording_without_locations_warns_and_still_works():
    recording = spiky_recording([(3000, 1)])
    bare = NumpyRecording([recording.get_traces()], FS, channel_ids=recording.channel_ids)
    with pytest.warns(UserWarning, match="no channel locations"):
        sorting = sip.threshold_crossings(bare, threshold=-5.5, filter=False, progress_bar=False)
    assert "location" not in sorting.get_property_keys()
    np.testing.assert_array_equal(sorting.get_unit_spike_train("ch1"), [3000])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(threshold=0.0), "non-zero"),
        (dict(refractory_ms=0.01), "shorter than one sample"),
        (dict(freq_min=6000.0, freq_max=7000.0), "Nyquist"),
        (dict(freq_min=500.0, freq_max=300.0), "freq_min < freq_max"),
    ],
)
def test_bad_arguments_are_refused_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sip.threshold_crossings(spiky_recording([]), progress_bar=False, **kwargs)


def test_a_dead_channel_warns_and_never_crosses():
    recording = spiky_recording([(3000, 0)])
    traces = recording.get_traces().copy()
    traces[:, 3] = 0.0
    dead = NumpyRecording([traces], FS, channel_ids=recording.channel_ids)
    dead.set_dummy_probe_from_locations(recording.get_channel_locations())
    with pytest.warns(UserWarning, match="zero noise"):
        sorting = sip.threshold_crossings(dead, threshold=-5.5, filter=False, progress_bar=False)
    assert len(sorting.get_unit_spike_train("ch3")) == 0
