"""The multi-region simulation: its spikes follow its true rates, and its structure (a driven
region that lags its source, an independent one) is visible in the spikes."""

import numpy as np
import pytest

import spikeinterface_poyo as sip
from spikeinterface_poyo.core.binning import binned_counts
from spikeinterface_poyo.core.metrics import bits_per_spike, r2_per_dimension


@pytest.fixture(scope="module")
def session():
    sorting, truth = sip.simulate_regions(duration=200.0, units_per_region=30, seed=3)
    centres = truth["bin_edges"][1:]  # bins end at these times: (t - 20 ms, t]
    counts = binned_counts(sorting, centres, bin_size=0.02, lags=1)[:, 0, :]
    return sorting, truth, counts


def test_regions_are_labelled_and_spikes_follow_the_true_rates(session):
    sorting, truth, counts = session
    areas = sorting.get_property("brain_area")
    assert sorted(set(areas)) == ["driven", "independent", "source"] and (areas == "driven").sum() == 30
    assert counts.shape == truth["rates"].shape
    assert counts.sum() == pytest.approx(truth["rates"].sum(), rel=0.02)
    assert np.corrcoef(counts.mean(axis=0), truth["rates"].mean(axis=0))[0, 1] > 0.99
    assert bits_per_spike(counts, truth["rates"])["pooled"] > 0.05  # the truth beats the mean rate


def _smooth(x, width=5):
    kernel = np.ones(width) / width
    return np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="same"), 0, x)


def _predictability(counts, areas, source, target, shifts):
    """Held-out R² of ridge regression from ``source``'s smoothed counts at the given bin shifts
    (positive: the past) to ``target``'s smoothed counts."""
    x, y = _smooth(counts[:, areas == source]), _smooth(counts[:, areas == target])
    width = max(abs(s) for s in shifts)
    rows = np.arange(width, len(x) - width)
    features = np.hstack([x[rows - s] for s in shifts] + [np.ones((len(rows), 1))])
    y = y[rows]
    half = len(rows) // 2
    gram = features[:half].T @ features[:half] + 10.0 * np.eye(features.shape[1])
    coef = np.linalg.solve(gram, features[:half].T @ y[:half])
    return float(np.mean(r2_per_dimension(y[half:], features[half:] @ coef)))


def test_the_driven_region_is_predictable_from_its_source_and_the_independent_one_is_not(session):
    sorting, truth, counts = session
    areas = sorting.get_property("brain_area")
    lag_bins = int(round(truth["lag_s"] / 0.02))
    past = [lag_bins - 1, lag_bins, lag_bins + 1]
    driven = _predictability(counts, areas, "source", "driven", past)
    independent = _predictability(counts, areas, "source", "independent", past)
    assert driven > 0.05 and independent < 0.01 and driven > independent + 0.05
    # the driven region follows its source: the source's past predicts it better than its future
    future = [-s for s in past]
    assert driven > _predictability(counts, areas, "source", "driven", future) + 0.02


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="coupling must be in"):
        sip.simulate_regions(duration=10.0, coupling=1.5)
    with pytest.raises(ValueError, match="lag must be in"):
        sip.simulate_regions(duration=10.0, lag=-0.1)
