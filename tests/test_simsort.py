"""SimSort: the detector's labels and events, the models' shapes and seeds, the triplet loss
on a toy set, the sorter registered in SpikeInterface, and bad input."""

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from spikeinterface.core import NumpySorting

import spikeinterface_poyo  # noqa: F401  (registers the sorter)
from spikeinterface_poyo.sorting.simsort.clustering import cluster_features, drop_small_clusters
from spikeinterface_poyo.sorting.simsort.detector import SpikeDetector, events_from_probability
from spikeinterface_poyo.sorting.simsort.embedder import WaveformEmbedder, sample_triplets, triplet_loss
from spikeinterface_poyo.sorting.simsort.simulation import TetrodeSettings, simulate_tetrode, spike_labels
from spikeinterface_poyo.sorting.simsort.sorter import check_sampling_frequency, tetrode_groups

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_labels_cover_each_peak_window_and_nothing_else():
    frames = np.array([3, 50, 52, 98])
    sorting = NumpySorting.from_samples_and_labels([frames], [np.zeros(4, dtype=int)], 30000.0)
    labels = spike_labels(sorting, 100, half_width=4)
    expected = np.zeros(100, dtype=bool)
    for f in frames:
        expected[max(f - 4, 0) : f + 5] = True  # both edges included, clipped to the segment
    np.testing.assert_array_equal(labels, expected)
    assert spike_labels(sorting, 100, half_width=0).sum() == 4


def test_events_sit_at_the_largest_deflection_of_each_run():
    traces = np.zeros((100, 4), dtype=np.float32)
    traces[12, 2], traces[15, 0], traces[60, 3], traces[63, 1] = -3.0, -8.0, 5.0, -2.0
    probability = np.zeros(100)
    probability[10:20] = 0.9  # one run holding two deflections: the larger wins
    probability[58:66] = 0.7
    probability[80] = 0.4  # below the threshold
    np.testing.assert_array_equal(events_from_probability(probability, traces, 0.5), [15, 60])
    # two runs closer than the exclusion: only the larger survives
    probability[40:45], traces[42, 0] = 0.9, -1.0
    assert 42 in events_from_probability(probability, traces, 0.5, exclude_samples=5)
    traces[45:58] = 0
    close = events_from_probability(probability, traces, 0.5, exclude_samples=20)
    assert 42 not in close and 60 in close


def test_detector_and_embedder_shapes_and_seeds():
    torch.manual_seed(0)
    detector = SpikeDetector.from_preset("cpu").eval()
    x = torch.randn(3, 256, 4)
    assert detector(x).shape == (3, 256)
    torch.manual_seed(0)
    again = SpikeDetector.from_preset("cpu").eval()
    assert torch.equal(detector(x), again(x))  # same seed, same model
    with pytest.raises(ValueError, match="multiple of the detector's patch"):
        detector(torch.randn(1, 255, 4))
    embedder = WaveformEmbedder.from_preset("cpu")
    z = embedder(torch.randn(5, 48, 4))
    assert z.shape == (5, 64)
    np.testing.assert_allclose(z.norm(dim=1).detach().numpy(), 1.0, atol=1e-5)


def test_the_triplet_loss_falls_on_a_toy_set():
    """Three waveform shapes under noise: a few hundred steps bring the triplet loss well down
    and the embeddings cluster back into the three shapes."""
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 32)
    shapes = np.stack([np.stack([np.sin(2 * np.pi * f * t + p) * a for a, p in zip(amps, (0, 1, 2, 3))], axis=1)
                       for f, amps in ((1, (1, .5, .2, 0)), (2, (0, .3, 1, .6)), (3, (.8, 0, .4, 1)))])  # fmt: skip
    labels = rng.integers(0, 3, 600)
    snippets = (shapes[labels] + 0.3 * rng.normal(size=(600, 32, 4))).astype(np.float32)
    torch.manual_seed(0)
    embedder = WaveformEmbedder.from_preset("cpu")
    optimizer = torch.optim.Adam(embedder.parameters(), lr=3e-3)
    test = sample_triplets(labels, 256, np.random.default_rng(1))

    def held_out_loss():
        with torch.no_grad():
            z = embedder(torch.from_numpy(snippets[test.reshape(-1)])).view(len(test), 3, -1).unbind(1)
            return float(triplet_loss(*z))

    before = held_out_loss()
    for _ in range(150):
        triplets = sample_triplets(labels, 64, rng)
        z = embedder(torch.from_numpy(snippets[triplets.reshape(-1)])).view(64, 3, -1).unbind(1)
        optimizer.zero_grad()
        triplet_loss(*z).backward()
        optimizer.step()
    assert held_out_loss() < 0.25 * before
    with torch.no_grad():
        found = cluster_features(embedder(torch.from_numpy(snippets)).numpy(), "kmeans", n_clusters=3)
    assert adjusted_rand_score(labels, found) > 0.9  # the shapes come back, up to their names


def test_triplets_pair_same_units_against_other_units():
    labels = np.array([0, 0, 0, 1, 1, 2])
    triplets = sample_triplets(labels, 200, np.random.default_rng(0))
    assert np.all(labels[triplets[:, 0]] == labels[triplets[:, 1]])
    assert np.all(triplets[:, 0] != triplets[:, 1])
    assert np.all(labels[triplets[:, 0]] != labels[triplets[:, 2]])
    with pytest.raises(ValueError, match="two units"):
        sample_triplets(np.zeros(5, dtype=int), 3, np.random.default_rng(0))


def test_small_clusters_become_noise_and_the_rest_are_renumbered():
    np.testing.assert_array_equal(drop_small_clusters(np.array([5, 5, 5, 2, 9, 9, 9]), 3), [0, 0, 0, -1, 1, 1, 1])


def test_simulated_tetrodes_are_four_channels_with_their_ground_truth():
    recording, sorting = simulate_tetrode(TetrodeSettings(duration=2.0, num_units=3, seed=4))
    assert recording.get_num_channels() == 4 and len(sorting.unit_ids) == 3
    positions = recording.get_probe().contact_positions
    assert sorted(np.unique(np.round(np.diff(np.sort(positions[:, 0])), 6)))[-1] == pytest.approx(13.0)
    traces = recording.get_traces()
    frames = sorting.to_spike_vector()["sample_index"]
    inner = frames[(frames > 30) & (frames < len(traces) - 30)]
    offsets = [int(np.argmax(np.abs(traces[f - 30 : f + 30]).max(axis=1))) - 30 for f in inner]
    assert np.median(np.abs(offsets)) <= 1  # spikes sit at their templates' peaks


def test_tetrode_groups_and_their_errors():
    recording, _ = simulate_tetrode(TetrodeSettings(duration=1.0, num_units=2, seed=0))
    assert [list(g) for g in tetrode_groups(recording)] == [list(recording.channel_ids)]
    with pytest.raises(ValueError, match="do not divide into tetrodes of 4"):
        tetrode_groups(recording.select_channels(recording.channel_ids[:3]))
    with pytest.raises(ValueError, match="Resample it first"):
        check_sampling_frequency(10000.0, [20000.0, 30000.0])
    check_sampling_frequency(30000.0, [20000.0, 30000.0])


@pytest.fixture(scope="module")
def held_out_tetrode(tmp_path_factory):
    """A saved simulated tetrode with seeds the shipped weights never saw, and its truth."""
    recording, truth = simulate_tetrode(TetrodeSettings(duration=30.0, num_units=6, noise_level=5.0, seed=424_242))
    return recording.save(folder=tmp_path_factory.mktemp("tetrode") / "rec", n_jobs=1), truth


def test_run_sorter_finds_simsort_and_it_sorts_a_held_out_tetrode(held_out_tetrode, tmp_path):
    """run_sorter, get_default_sorter_params and read_sorter_folder all know "simsort", and the
    shipped pair sorts a simulation it was not trained on well (benchmarks/sorting.py compares it
    with other sorters and with threshold detection over seeds and noise levels)."""
    import spikeinterface.sorters as ss
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    recording, truth = held_out_tetrode
    assert "simsort" in ss.available_sorters() and "simsort" in ss.installed_sorters()
    assert ss.get_default_sorter_params("simsort")["clusterer"] == "mean_shift"
    sorting = ss.run_sorter("simsort", recording, folder=tmp_path / "ss", verbose=False)
    again = ss.read_sorter_folder(tmp_path / "ss")
    np.testing.assert_array_equal(again.unit_ids, sorting.unit_ids)
    assert set(sorting.get_property("group")) == {0}
    comparison = compare_sorter_to_ground_truth(truth, sorting, exhaustive_gt=True)
    accuracy = comparison.get_performance()["accuracy"].mean()
    assert accuracy > 0.7 and comparison.count_well_detected_units(0.8) >= 4
    assert comparison.count_false_positive_units() <= 2


def test_the_sorter_refuses_what_it_cannot_sort(held_out_tetrode, tmp_path):
    import spikeinterface.sorters as ss
    from spikeinterface.core import NumpyRecording
    from spikeinterface.preprocessing import resample

    recording, _ = held_out_tetrode
    with pytest.raises(Exception, match="do not divide into tetrodes of 4"):
        ss.run_sorter("simsort", recording.select_channels(recording.channel_ids[:3]), folder=tmp_path / "a")
    with pytest.raises(Exception, match="Resample it first"):
        ss.run_sorter("simsort", resample(recording, 8000), folder=tmp_path / "b", verbose=False)
    zeros = NumpyRecording([np.zeros((30000, 4), dtype="float32")], sampling_frequency=30000.0)
    zeros.set_probe(recording.get_probe())
    with pytest.raises(Exception, match="constant"):
        ss.run_sorter("simsort", zeros.save(folder=tmp_path / "zeros"), folder=tmp_path / "c", verbose=False)
    assert not (tmp_path / "c" / "sorter_output" / "sorting").exists()  # nothing written half
