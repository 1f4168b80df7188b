"""End to end: a simulated recording decoded from its true spikes, its threshold crossings and a
sorter's output (a small version of examples/simulated_recording.py), and unit metadata."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import spikeinterface.core as si

import spikeinterface_poyo as sip
from spikeinterface_poyo.simulation import simulate_recording

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "simulated_recording.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("simulated_recording_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_simulated_recording_carries_the_session_spikes():
    recording, sorting, behavior = simulate_recording(duration=5.0, num_channels=4, num_units=6, seed=4)
    session_sorting, session_behavior = sip.simulate_session(5.0, 6, sampling_frequency=20000.0, seed=4)
    assert recording.get_num_channels() == 4 and recording.has_probe()
    assert recording.get_total_duration() == pytest.approx(5.0)
    np.testing.assert_array_equal(sorting.to_spike_vector(), session_sorting.to_spike_vector())
    np.testing.assert_array_equal(behavior.values, session_behavior.values)
    assert {"gt_unit_locations", "main_channel_id", "preferred_direction"} <= set(sorting.get_property_keys())
    # units are dealt to electrodes in turn: 6 units on 4 electrodes
    assert sorted(np.unique(sorting.get_property("main_channel_id"), return_counts=True)[1]) == [1, 1, 2, 2]


def test_threshold_crossings_decode_about_as_well_as_the_true_sorting(example):
    # the epoch count ends training, not the clock: the same result on a loaded machine
    results = example.run(
        duration=60.0,
        num_channels=16,
        sorter=None,
        max_epochs=40,
        max_time_s=None,
        verbose=False,
    )
    assert results["num_units"] == {"true": 16, "threshold_crossings": 16}
    assert results["true"] > 0.3, results
    assert abs(results["threshold_crossings"] - results["true"]) < 0.1, results
    # the analyzer extension, saved as zarr and read back, gives the same decoding
    assert results["analyzer"] == pytest.approx(results["threshold_crossings"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in ("numba", "sklearn")),
    reason="the 'simple' sorter needs numba and scikit-learn",
)
def test_a_spikeinterface_sorter_output_decodes(example, tmp_path):
    recording, _, behavior = simulate_recording(
        duration=20.0, num_channels=4, seed=5, sorting_folder=tmp_path / "true_sorting"
    )
    sorting = example.run_sorter(recording, tmp_path / "simple")
    assert sorting.get_num_units() > 0
    r2, model = example.train_and_score(sorting, behavior, max_epochs=2, max_time_s=None, batch_size=16)
    assert -1.0 < r2 <= 1.0  # 20 s and two epochs: a working pipeline, not an accuracy claim
    assert model.meta["training"]["num_units"] == sorting.get_num_units()


def test_unit_properties_travel_with_the_tokens_of_a_sorting_or_an_analyzer():
    sorting, _ = sip.simulate_session(duration=5.0, num_units=4, seed=6)
    sorting.set_property("brain_area", np.array(["M1", "M1", "PMd", "S1"]))
    sorting.set_property("location", np.arange(8.0).reshape(4, 2))
    sorting.set_property("quality", np.array(["good", "mua", "good", "good"]))
    recording = si.generate_recording(num_channels=4, durations=[5.0], sampling_frequency=30000.0, seed=0)
    analyzer = si.create_sorting_analyzer(sorting, recording, sparse=False)
    for source in (sorting, analyzer):
        (tokens,) = sip.sorting_to_tokens(source, session_id="monkey")
        np.testing.assert_array_equal(tokens.unit_properties["brain_area"], ["M1", "M1", "PMd", "S1"])
        np.testing.assert_array_equal(tokens.unit_properties["location"], np.arange(8.0).reshape(4, 2))
        np.testing.assert_array_equal(tokens.unit_properties["quality"], ["good", "mua", "good", "good"])
        assert tokens.unit_ids == [f"monkey/{u}" for u in sorting.unit_ids]
