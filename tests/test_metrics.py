"""The package's scores: R² and bits per spike (checked on simulated Poisson counts whose rates are known)."""

import numpy as np
import pytest

import spikeinterface_poyo as sip
from spikeinterface_poyo.core.metrics import bits_per_spike


@pytest.fixture(scope="module")
def poisson():
    """Counts of 40 neurons in 5000 bins drawn from known, modulated expected counts."""
    rng = np.random.default_rng(0)
    t = np.arange(5000)
    phase = rng.uniform(0, 2 * np.pi, 40)
    rates = 0.2 * rng.uniform(0.3, 2.0, 40) * np.exp(0.8 * np.sin(2 * np.pi * t[:, None] / 200 + phase))
    return rng.poisson(rates), rates


def test_the_mean_rate_prediction_scores_zero_and_the_true_rates_score_best(poisson):
    counts, rates = poisson
    null = bits_per_spike(counts, np.broadcast_to(counts.mean(axis=0), counts.shape))
    assert null["mean"] == pytest.approx(0.0, abs=1e-12) and null["pooled"] == pytest.approx(0.0, abs=1e-12)
    oracle = bits_per_spike(counts, rates)
    assert 0.1 < oracle["pooled"] < 1.0 and 0.1 < oracle["mean"] < 1.0
    # a blurred version of the truth is between the null and the oracle
    blurred = 0.5 * rates + 0.5 * rates.mean(axis=0)
    assert 0 < bits_per_spike(counts, blurred)["pooled"] < oracle["pooled"]
    # expected gain of the truth over the null, in bits per spike, computed from the rates alone
    lam, mean = rates, rates.mean(axis=0)
    expected = (lam * np.log(lam / mean)).sum() / (lam.sum() * np.log(2))
    assert oracle["pooled"] == pytest.approx(expected, abs=0.02)


def test_silent_neurons_are_left_out_and_counted_and_bad_input_is_refused(poisson):
    counts, rates = poisson
    counts = counts.copy()
    counts[:, 3] = 0
    score = bits_per_spike(counts, rates)
    assert score["n_excluded"] == 1 and np.isnan(score["per_neuron"][3])
    assert np.isfinite(np.delete(score["per_neuron"], 3)).all()
    with pytest.raises(ValueError, match="same shape"):
        bits_per_spike(counts, rates[:-1])
    with pytest.raises(ValueError, match="non-negative"):
        bits_per_spike(counts, -rates)
    with pytest.raises(ValueError, match="one expected count per neuron"):
        bits_per_spike(counts, rates, null_rates=np.ones(3))


def test_r2_is_one_for_the_truth_zero_for_the_mean_and_leaves_nans_out():
    t = np.arange(100) * 0.01
    truth = sip.Behavior(t, np.stack([np.sin(t * 7), np.cos(t * 5)], axis=1))
    assert sip.r2_score(truth, truth)["mean"] == pytest.approx(1.0)
    mean = np.broadcast_to(truth.values.mean(axis=0), truth.values.shape)
    assert sip.r2_score(truth.values, mean)["mean"] == pytest.approx(0.0, abs=1e-12)
    holed = truth.values.copy()
    holed[::10] = np.nan
    assert sip.r2_score(truth.values, holed)["n_excluded"] == 10
