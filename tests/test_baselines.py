"""Baseline decoders (Wiener filter, MLP, GRU) on a small simulated session."""

import numpy as np
import pytest

import spikeinterface_poyo as sip
from spikeinterface_poyo.models.baselines import GRUDecoder, MLPDecoder, WienerFilter, binned_history

# measured R² on the last 30 % of the 120 s, 40-unit session: Wiener 0.84, MLP 0.87, GRU 0.87
MIN_R2 = {WienerFilter: 0.7, MLPDecoder: 0.6, GRUDecoder: 0.6}
NEURAL = [MLPDecoder, GRUDecoder]

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small networks: a second thread only contends


@pytest.fixture(scope="module")
def split(simulated):
    sorting, behavior = simulated
    return (sorting, *behavior.split(0.7))


@pytest.mark.parametrize("cls", [WienerFilter, MLPDecoder, GRUDecoder], ids=lambda c: c.__name__)
def test_baseline_decodes_simulated_velocity(split, cls):
    sorting, train, test = split
    decoded = cls().fit(sorting, train).predict(sorting, test.timestamps)
    assert isinstance(decoded, sip.Behavior)
    assert decoded.values.shape == test.values.shape
    assert decoded.name == "decoded_velocity" and decoded.dimension_names == ["x", "y"]
    assert sip.r2_score(test, decoded)["mean"] > MIN_R2[cls]


@pytest.mark.parametrize("cls", NEURAL, ids=lambda c: c.__name__)
def test_neural_baseline_is_deterministic_per_seed(split, cls):
    sorting, train, test = split
    first = cls(seed=3, max_epochs=3).fit(sorting, train).predict(sorting, test.timestamps).values
    again = cls(seed=3, max_epochs=3).fit(sorting, train).predict(sorting, test.timestamps).values
    other = cls(seed=4, max_epochs=3).fit(sorting, train).predict(sorting, test.timestamps).values
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


@pytest.mark.parametrize("cls", NEURAL, ids=lambda c: c.__name__)
def test_targets_are_standardised(split, cls):
    # training on z-scored targets makes the fit blind to the behaviour's scale and offset
    sorting, train, test = split
    scaled = sip.Behavior(train.timestamps, 1000 * train.values + 5, train.name)
    plain = cls(max_epochs=2).fit(sorting, train).predict(sorting, test.timestamps).values
    big = cls(max_epochs=2).fit(sorting, scaled).predict(sorting, test.timestamps).values
    np.testing.assert_allclose(big, 1000 * plain + 5, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("cls", NEURAL, ids=lambda c: c.__name__)
def test_early_stopping_keeps_the_best_epoch(split, cls):
    sorting, train, _ = split
    decoder = cls(max_epochs=40, patience=2).fit(sorting, train)
    history = decoder.history_["val_r2"]
    assert len(history) <= 40
    assert decoder.best_val_r2_ == pytest.approx(max(history))
    assert len(history) == 40 or len(history) - decoder.best_epoch_ == 2


@pytest.mark.parametrize("cls", [WienerFilter, MLPDecoder, GRUDecoder], ids=lambda c: c.__name__)
def test_behaviour_not_overlapping_spikes_is_refused(simulated, cls):
    sorting, behavior = simulated
    late = sip.Behavior(behavior.timestamps + 1000.0, behavior.values, behavior.name)
    with pytest.raises(ValueError, match="does not overlap the spikes"):
        cls().fit(sorting, late)


@pytest.mark.parametrize("cls", [WienerFilter, MLPDecoder], ids=lambda c: c.__name__)
def test_bad_input_is_refused_clearly(simulated, cls):
    sorting, behavior = simulated
    with pytest.raises(TypeError, match="sip.Behavior"):
        cls().fit(sorting, behavior.values)
    with pytest.raises(ValueError, match="no usable samples"):
        cls().fit(sorting, sip.Behavior(behavior.timestamps, np.full_like(behavior.values, np.nan)))
    with pytest.raises(RuntimeError, match="not fitted"):
        cls().predict(sorting, behavior.timestamps)
    fitted = cls(**({} if cls is WienerFilter else {"max_epochs": 1})).fit(sorting, behavior)
    subset = sorting.select_units(sorting.unit_ids[:10])
    with pytest.raises(ValueError, match="not one the model was trained on"):
        fitted.predict(subset, behavior.timestamps)
    with pytest.raises(ValueError, match="exactly the 40 units it was fitted on"):
        fitted.predict(subset, behavior.timestamps, session_id="session")


def test_binned_history_counts_spikes_causally():
    from spikeinterface.core import NumpySorting

    fs = 1000.0
    # unit 0 fires at 0.012, 0.063, 0.108 s; unit 1 at 0.095 s (away from bin edges)
    sorting = NumpySorting.from_samples_and_labels([np.array([12, 63, 95, 108])], [np.array([0, 0, 1, 0])], fs)
    features = binned_history(sorting, np.array([0.11, 0.2]), bin_size=0.05, lags=3)
    # columns lag-major: [bin0 u0, bin0 u1, bin1 u0, bin1 u1, bin2 u0, bin2 u1]; bin0 = (t - 0.05, t]
    np.testing.assert_array_equal(features[0], [2, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(features[1], [0, 0, 1, 0, 1, 1])


def test_binned_history_appends_leads_after_the_history():
    from spikeinterface.core import NumpySorting

    fs = 1000.0
    # unit 0 fires at 0.012, 0.063, 0.108 s; unit 1 at 0.095 and 0.13 s
    sorting = NumpySorting.from_samples_and_labels([np.array([12, 63, 95, 108, 130])], [np.array([0, 0, 1, 0, 1])], fs)
    features = binned_history(sorting, np.array([0.06]), bin_size=0.05, lags=1, leads=2)
    # [history (0.01, 0.06] u0, u1 | lead 1 (0.06, 0.11] u0, u1 | lead 2 (0.11, 0.16] u0, u1]
    np.testing.assert_array_equal(features[0], [1, 0, 2, 1, 0, 1])
    causal = binned_history(sorting, np.array([0.11, 0.2]), bin_size=0.05, lags=3, leads=0)
    np.testing.assert_array_equal(causal, binned_history(sorting, np.array([0.11, 0.2]), bin_size=0.05, lags=3))


LOOK_AHEAD = {
    "wiener": lambda: WienerFilter(lags=3, leads=2),
    "mlp": lambda: MLPDecoder(lags=3, leads=2, max_epochs=2),
    "gru": lambda: GRUDecoder(lags=3, leads=2, max_epochs=2, bidirectional=True),
    "gru_forward": lambda: GRUDecoder(lags=3, leads=2, max_epochs=2),
}


@pytest.mark.parametrize("name", sorted(LOOK_AHEAD))
def test_leads_look_ahead_and_round_trip(split, name, tmp_path):
    sorting, train, test = split
    decoder = LOOK_AHEAD[name]().fit(sorting, train)
    cut = float(test.timestamps[len(test) // 2])  # spikes from here on removed
    truncated = sorting.frame_slice(0, int(cut * sorting.sampling_frequency))
    t = test.timestamps[test.timestamps < cut - 1e-6]
    full = decoder.predict(sorting, t).values
    cut_off = decoder.predict(truncated, t, session_id="session").values
    far = t < cut - decoder.bin_size * decoder.leads - 1e-6  # look-ahead ends before the cut
    np.testing.assert_allclose(full[far], cut_off[far], rtol=1e-5, atol=1e-6)
    assert not np.allclose(full[~far], cut_off[~far])  # the last leads bins before the cut do read ahead
    assert decoder.window_length == pytest.approx(decoder.bin_size * 5)

    folder = sip.save_model(decoder, tmp_path / "model")
    loaded = sip.load_model(folder)
    assert loaded.get_params()["leads"] == 2
    assert loaded.get_params().get("bidirectional", False) == (name == "gru")
    np.testing.assert_allclose(loaded.predict(sorting, t).values, full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", [WienerFilter, MLPDecoder, GRUDecoder], ids=lambda c: c.__name__)
def test_default_baselines_stay_causal(split, cls):
    sorting, train, test = split
    decoder = cls(**({} if cls is WienerFilter else {"max_epochs": 1})).fit(sorting, train)
    cut = float(test.timestamps[len(test) // 2])
    truncated = sorting.frame_slice(0, int(cut * sorting.sampling_frequency))
    t = test.timestamps[test.timestamps < cut - 1e-6]
    np.testing.assert_allclose(
        decoder.predict(sorting, t).values, decoder.predict(truncated, t, session_id="session").values, rtol=1e-5,
        atol=1e-6,
    )  # fmt: skip
