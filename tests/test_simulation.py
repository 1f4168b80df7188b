import numpy as np
import pytest

import spikeinterface_poyo as sip
from spikeinterface_poyo.simulation import (
    BEHAVIORS,
    random_session_params,
    simulate_corpus,
    simulate_reaches,
    simulate_session,
    unit_rates,
)

MIXED = {"velocity": 0.5, "position": 0.3, "untuned": 0.2}


def spike_vector(sorting):
    sv = sorting.to_spike_vector()
    return sv["sample_index"], sv["unit_index"]


def test_same_seed_same_session_and_other_seed_another():
    kwargs = dict(duration=10.0, num_units=8, behavior="reaching", tuning_fractions=MIXED, lag=(0.0, 0.15))
    a, b, c = (simulate_session(seed=s, **kwargs) for s in (3, 3, 4))
    for x, y in zip(spike_vector(a[0]), spike_vector(b[0])):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a[1].values, b[1].values)
    assert not np.array_equal(a[1].values, c[1].values)


@pytest.mark.parametrize("behavior", BEHAVIORS)
def test_every_behavior_has_a_2d_readout_at_its_rate(behavior):
    sorting, readout = simulate_session(
        duration=12.0, num_units=10, behavior_rate=25.0, behavior=behavior, tuning_fractions=MIXED, seed=1
    )
    assert readout.values.shape == (300, 2) and np.isfinite(readout.values).all()
    assert readout.name == ("position" if behavior == "position" else "velocity")
    np.testing.assert_allclose(np.diff(readout.timestamps), 1 / 25.0)
    samples, units = spike_vector(sorting)
    assert sorting.get_num_units() == 10 and len(samples) > 0
    assert samples.max() < 12.0 * sorting.sampling_frequency and set(units) <= set(range(10))


def test_unit_properties_hold_the_ground_truth():
    sorting, _ = simulate_session(
        duration=10.0, num_units=40, behavior="position", tuning_fractions=MIXED, lag=(0.0, 0.15), seed=2
    )
    kinds = sorting.get_property("tuning")
    assert [np.sum(kinds == k) for k in ("velocity", "position", "untuned")] == [20, 12, 8]
    lags = sorting.get_property("lag_s")
    assert lags.min() >= 0 and lags.max() <= 0.15 and len(np.unique(lags)) > 10
    place = kinds == "position"
    assert np.isfinite(sorting.get_property("field_width")[place]).all()
    assert np.isnan(sorting.get_property("field_width")[~place]).all()
    assert np.isnan(sorting.get_property("preferred_direction")[kinds != "velocity"]).all()


def test_place_cells_fire_in_their_field():
    sorting, position = simulate_session(
        duration=120.0, num_units=6, behavior="position", tuning_fractions={"position": 1.0}, lag=0.0, seed=5
    )
    standard = (position.values - position.values.mean(0)) / position.values.std(0)
    for unit in sorting.unit_ids[:3]:
        centre = np.array([sorting.get_property("field_x")[unit], sorting.get_property("field_y")[unit]])
        width = sorting.get_property("field_width")[unit]
        spikes = sorting.get_unit_spike_train(unit, return_times=True)
        at_spike = standard[np.minimum(np.searchsorted(position.timestamps, spikes), len(standard) - 1)]
        near_spike = np.mean(np.linalg.norm(at_spike - centre, axis=1) < width)
        near_anywhere = np.mean(np.linalg.norm(standard - centre, axis=1) < width)
        assert near_spike > 2 * near_anywhere


def test_velocity_units_lead_the_behaviour_by_their_lag():
    lag = 0.15
    sorting, velocity = simulate_session(duration=120.0, num_units=30, lag=lag, behavior="reaching", seed=6)
    direction = sorting.get_property("preferred_direction")
    spikes, units = spike_vector(sorting)
    times = spikes / sorting.sampling_frequency
    projected = velocity.values @ np.stack([np.cos(direction), np.sin(direction)])  # (T, U)

    def mean_drive(shift):
        index = np.clip(np.searchsorted(velocity.timestamps, times + shift), 0, len(projected) - 1)
        return projected[index, units].mean()

    assert mean_drive(lag) > mean_drive(0.0) > 0
    assert mean_drive(lag) > mean_drive(2 * lag + 0.1)


def test_binned_spike_times_stay_in_their_bins_and_in_the_session():
    sorting, _ = simulate_session(duration=10.0, num_units=5, spike_time_precision=0.05, seed=7)
    samples, _ = spike_vector(sorting)
    assert samples.min() >= 0 and samples.max() < 10.0 * sorting.sampling_frequency
    assert np.all(np.diff(samples) >= 0)


def test_reaches_are_smooth_with_holds():
    rng = np.random.default_rng(0)
    position, velocity, _ = simulate_reaches(60.0, 100.0, rng)
    speed = np.linalg.norm(velocity, axis=1)
    assert velocity.shape == (6000, 2) and position.shape == (6000, 2)
    assert np.mean(speed < 0.1 * speed.max()) > 0.2  # holds between reaches
    assert np.abs(position).max() < 1.6  # reaches go out to about the unit circle and back
    assert np.corrcoef(velocity[:-5, 0], velocity[5:, 0])[0, 1] > 0.8  # smooth at 50 ms


def test_reach_plan_points_at_the_next_reach_while_the_hand_is_still():
    rng = np.random.default_rng(1)
    position, velocity, plan = simulate_reaches(120.0, 100.0, rng)
    speed = np.linalg.norm(velocity, axis=1)
    planning = np.linalg.norm(plan, axis=1) > 0
    assert 0.05 < planning.mean() < 0.5
    assert np.percentile(speed[planning], 99) < 0.15 * speed.max()  # only while the hand is still
    np.testing.assert_allclose(np.linalg.norm(plan[planning], axis=1), 1.0)
    # each planning period ends where a reach starts, and points where the hand then goes
    ends = np.flatnonzero(planning[:-1] & ~planning[1:])
    assert len(ends) > 30
    for end in ends:
        ahead = position[min(end + 60, len(position) - 1)] - position[end]  # 0.6 s into the reach
        assert ahead @ plan[end] > 0.8 * np.linalg.norm(ahead)


def test_internal_state_latents_couple_units_by_their_loadings_and_keep_mean_rates():
    kwargs = dict(duration=300.0, num_units=40, lag=0.0, tuning_fractions={"untuned": 1.0}, firing_rates=(20.0, 20.0))
    quiet, _ = simulate_session(**kwargs, seed=0)
    busy, _ = simulate_session(**kwargs, seed=0, state_dims=1, state_noise=1.0)
    loading = busy.get_property("state_loading_0")
    assert loading.shape == (40,) and "state_loading_0" not in quiet.get_property_keys()
    seconds = 300.0
    for sorting in (quiet, busy):  # mean rates near the baseline (2 s latents over 300 s: a few % of spread)
        rates = np.array([len(sorting.get_unit_spike_train(u)) for u in sorting.unit_ids]) / seconds
        assert 0.85 < np.median(rates / 20.0) < 1.15

    def pair_correlations(sorting):
        samples, units = spike_vector(sorting)
        counts = np.zeros((300, 40))
        np.add.at(counts, (np.minimum(samples // 30000, 299), units), 1)
        return np.corrcoef(counts.T)[np.triu_indices(40, 1)]

    product = np.outer(loading, loading)[np.triu_indices(40, 1)]
    together, opposed = product > 0.5, product < -0.5
    busy_r, quiet_r = pair_correlations(busy), pair_correlations(quiet)
    # units loading the same way fire together, opposite ways in turn; without the latents neither
    assert busy_r[together].mean() > 0.2 and busy_r[opposed].mean() < -0.1
    assert abs(quiet_r[together].mean()) < 0.05 and abs(quiet_r[opposed].mean()) < 0.05


def test_preparatory_tuning_scales_rates_with_the_plan():
    tuning = {
        "tuning": np.array(["velocity", "velocity"]),
        "baseline_hz": np.array([10.0, 10.0]),
        "preferred_direction": np.array([0.0, 0.0]),
        "gain": np.array([0.5, 0.5]),
        "lag_s": np.zeros(2),
        "preparatory_direction": np.array([0.0, np.pi / 2]),
        "preparatory_gain": np.array([0.8, 0.8]),
    }
    still = np.zeros((3, 2))
    plan = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]])  # towards, away from unit 0's direction, none
    rates = unit_rates(still, still, tuning, 0, 3, plan)
    np.testing.assert_allclose(rates[0, 0] / rates[2, 0], np.exp(0.8))
    np.testing.assert_allclose(rates[1, 0] / rates[2, 0], np.exp(-0.8))
    np.testing.assert_allclose(rates[:, 1], rates[2, 1])  # orthogonal to unit 1's direction
    np.testing.assert_allclose(unit_rates(still, still, tuning, 0, 3)[:, 0], rates[2, 0])


def test_preparatory_activity_is_a_property_of_reaching_sessions():
    common = dict(duration=20.0, num_units=20, tuning_fractions={"velocity": 0.8, "untuned": 0.2}, seed=2)
    sorting, _ = simulate_session(behavior="reaching", preparatory_gain=0.7, **common)
    depth = sorting.get_property("preparatory_gain")
    velocity_units = sorting.get_property("tuning") == "velocity"
    assert np.all((depth[velocity_units] >= 0) & (depth[velocity_units] <= 0.7))
    assert np.isnan(depth[~velocity_units]).all()
    plain, _ = simulate_session(behavior="velocity", preparatory_gain=0.7, **common)
    assert "preparatory_gain" not in plain.get_property_keys()  # no reaches, nothing to prepare


def test_random_sessions_are_heterogeneous():
    rng = np.random.default_rng(0)
    params = [random_session_params(rng) for _ in range(40)]
    units = [p["num_units"] for p in params]
    assert min(units) >= 30 and max(units) <= 200 and len(set(units)) > 20
    assert {p["behavior"] for p in params} == set(BEHAVIORS)
    assert len({p["behavior_rate"] for p in params}) > 3
    assert min(p["behavior_rate"] for p in params) >= 20 and max(p["behavior_rate"] for p in params) <= 100
    assert len({p["lag"][1] for p in params}) > 20 and max(p["lag"][1] for p in params) <= 0.15
    assert len({p["firing_rates"] for p in params}) == 40
    assert {p["spike_time_precision"] for p in params} == {None, 0.05}
    assert all(abs(sum(p["tuning_fractions"].values()) - 1) < 0.01 for p in params)


def test_corpus_is_reproducible_and_ready_to_pretrain():
    a = simulate_corpus(3, seed=5, duration=(8.0, 12.0))
    b = simulate_corpus(3, seed=5, duration=(8.0, 12.0))
    assert [s["session_id"] for s in a] == ["sim5_0", "sim5_1", "sim5_2"]
    assert [s["params"] for s in a] == [s["params"] for s in b]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["behavior"].values, y["behavior"].values)
        assert x["behavior"].num_dimensions == 2
        assert x["sorting"].get_num_units() == x["params"]["num_units"]
    other = simulate_corpus(3, seed=6, duration=(8.0, 12.0))
    assert [s["params"] for s in other] != [s["params"] for s in a]
    assert sip.simulate_session is simulate_session
