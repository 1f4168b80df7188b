"""MoLDS (issue 19): the LDS and its timing, Ho-Kalman, the Kalman filter against the dense Gaussian,
EM's monotone likelihood, the tensor moments on synthetic mixtures, trial clustering on real trials,
and bad input."""

import warnings

import numpy as np
import pytest
from conftest import shared_file

import spikeinterface_poyo as sip
from spikeinterface_poyo.analysis.molds import LinearDynamicalSystem, MoLDS, ho_kalman
from spikeinterface_poyo.analysis.molds.lds import TrialBatch, kalman_filter, smoothed_statistics
from spikeinterface_poyo.analysis.molds.moments import joint_diagonalize, tensor_initialization, tensor_power
from spikeinterface_poyo.analysis.molds.synthetic import (
    clustering_accuracy,
    random_lds,
    random_mixture,
    recovery_errors,
    sample_trials,
)


def _system(n, m, p, seed=0, noise=0.3):
    return random_lds(n, m, p, np.random.default_rng(seed), noise=noise)


def test_timing_convention_and_markov_parameters():
    lds = _system(3, 2, 2)
    lds.Q, lds.R, lds.P0 = 1e-30 * np.eye(3), 1e-30 * np.eye(2), 1e-30 * np.eye(3)
    u = np.zeros((8, 2))
    u[0, 1] = 1.0  # an impulse on input 1 at t = 0
    _, y = lds.simulate(u, np.random.default_rng(0))
    G = lds.markov_parameters(8)
    np.testing.assert_allclose(y[0], lds.D[:, 1], atol=1e-12)  # y_0 sees u_0 through D at once
    np.testing.assert_allclose(y[1], (lds.C @ lds.B)[:, 1], atol=1e-12)  # and through C B one step later
    np.testing.assert_allclose(y, G[:, :, 1], atol=1e-12)


@pytest.mark.parametrize("n, m, p", [(2, 1, 1), (3, 2, 2), (4, 1, 3), (3, 3, 1)])
def test_ho_kalman_reproduces_exact_markov_parameters(n, m, p):
    lds = _system(n, m, p, seed=n + m + p)
    A, B, C, D = ho_kalman(lds.markov_parameters(2 * n + 2), n)
    realised = LinearDynamicalSystem(A, B, C, D, lds.Q, lds.R, lds.m0, lds.P0)
    np.testing.assert_allclose(realised.markov_parameters(40), lds.markov_parameters(40), atol=1e-8)
    with pytest.raises(ValueError, match="Use at least"):
        ho_kalman(lds.markov_parameters(n), n)


def _dense_moments(lds, u):
    """Mean and covariance of the stacked states and outputs of one trial, written out densely."""
    T, n = len(u), lds.state_dim
    Phi = [np.linalg.matrix_power(lds.A, k) for k in range(T + 1)]
    mean_x = np.array([Phi[t] @ lds.m0 + sum(Phi[t - 1 - s] @ lds.B @ u[s] for s in range(t)) for t in range(T)])
    cov_x = np.zeros((T * n, T * n))
    for t in range(T):
        for s in range(T):
            c = Phi[t] @ lds.P0 @ Phi[s].T
            c = c + sum(Phi[t - 1 - r] @ lds.Q @ Phi[s - 1 - r].T for r in range(min(t, s)))
            cov_x[t * n : (t + 1) * n, s * n : (s + 1) * n] = c
    Cbig = np.kron(np.eye(T), lds.C)
    mean_y = (mean_x @ lds.C.T + u @ lds.D.T).ravel()
    cov_y = Cbig @ cov_x @ Cbig.T + np.kron(np.eye(T), lds.R)
    return mean_x.ravel(), cov_x, mean_y, cov_y, Cbig


def test_kalman_filter_and_smoother_match_the_dense_gaussian():
    from scipy.stats import multivariate_normal

    lds = _system(2, 1, 2, seed=3)
    lds.m0, lds.P0 = np.array([0.5, -0.2]), 0.7 * np.eye(2)
    rng = np.random.default_rng(1)
    u = rng.standard_normal((6, 1))
    _, y = lds.simulate(u, rng)
    mean_x, cov_x, mean_y, cov_y, Cbig = _dense_moments(lds, u)
    batch = TrialBatch.from_lists([u], [y])
    loglik, filtered = kalman_filter(lds, batch)
    np.testing.assert_allclose(loglik[0], multivariate_normal(mean_y, cov_y).logpdf(y.ravel()), rtol=1e-10)
    # the smoothed first state is the dense conditional mean E[x_0 | y_0..y_5]
    gain = cov_x @ Cbig.T @ np.linalg.inv(cov_y)
    posterior = mean_x + gain @ (y.ravel() - mean_y)
    stats = smoothed_statistics(lds, batch, np.ones(1), filtered)
    np.testing.assert_allclose(stats.x0, posterior[:2], atol=1e-10)
    post_cov = cov_x - gain @ Cbig @ cov_x
    np.testing.assert_allclose(stats.x0x0, post_cov[:2, :2] + np.outer(posterior[:2], posterior[:2]), atol=1e-10)


@pytest.mark.parametrize("init", ["tensor", "random", "kmeans"])
def test_em_log_likelihood_never_decreases(init):
    w, systems = random_mixture("small", 4, noise=0.3)
    U, Y, _ = sample_trials(w, systems, 200, 80, 5)
    model = MoLDS(3, 2, init=init, max_iter=15, tol=-np.inf, random_state=0).fit(U, Y)
    history = np.array(model.log_likelihood_history_)
    assert len(history) == 16
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[-1])), np.diff(history)


def test_joint_diagonalisation_and_power_method_recover_an_orthogonal_tensor():
    rng = np.random.default_rng(0)
    V, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    lam = np.array([3.0, 2.0, 1.5, 1.2])
    T = np.einsum("k,ak,bk,ck->abc", lam, V, V, V)
    for vectors in (joint_diagonalize(np.moveaxis(T, 2, 0)), tensor_power(T, rng)[1]):
        np.testing.assert_allclose(np.sort(np.abs(vectors.T @ V).max(0)), np.ones(4), atol=1e-8)


def test_tensor_moments_recover_weights_and_markov_parameters():
    """About 1.6 million lagged samples (8000 trials of 205 steps, 6 lags) from the small setting: the
    median over three mixtures of the Markov-parameter error (relative, after matching) is below 0.08
    and of the largest weight error below 0.05, for both decompositions."""
    errors = {"smd": [], "power": []}
    for seed in range(3):
        w, systems = random_mixture("small", seed, noise=0.1)
        U, Y, _ = sample_trials(w, systems, 8000, 205, seed + 100)
        true = np.stack([s.markov_parameters(6) for s in systems])
        for decomposition in errors:
            est_w, est_markov = tensor_initialization(U, Y, 3, 6, decomposition, rng=0)
            r = recovery_errors(w, true, est_w, est_markov)
            errors[decomposition].append((r["markov_error"], r["weight_error"]))
    for decomposition, errs in errors.items():
        markov, weight = np.median(errs, axis=0)
        assert markov < 0.08 and weight < 0.05, (decomposition, errs)


def test_tensor_em_clusters_trials_and_improves_on_the_pure_tensor_estimate():
    w, systems = random_mixture("small", 7, noise=0.3)
    U, Y, labels = sample_trials(w, systems, 600, 200, 8)
    true = np.stack([s.markov_parameters(6) for s in systems])
    model = MoLDS(3, 2, init="tensor", max_iter=60, random_state=0).fit(U, Y)
    pure = recovery_errors(
        w, true, model.init_weights_, np.stack([c.markov_parameters(6) for c in model.init_components_])
    )
    refined = recovery_errors(w, true, model.weights_, model.markov_parameters(6))
    assert refined["markov_error"] < pure["markov_error"]
    assert refined["markov_error"] < 0.1
    held_U, held_Y, held_labels = sample_trials(w, systems, 300, 200, 9)
    assert clustering_accuracy(held_labels, model.predict(held_U, held_Y)) >= 0.95
    assert clustering_accuracy(labels, model.predict(U, Y)) >= 0.95


def test_estimator_face_is_consistent_and_deterministic():
    w, systems = random_mixture("small", 2, noise=0.3)
    U, Y, _ = sample_trials(w, systems, 150, 60, 3)
    a = MoLDS(3, 2, max_iter=5, random_state=4).fit(U, Y)
    b = MoLDS(3, 2, max_iter=5, random_state=4).fit(U, Y)
    assert a.log_likelihood_history_ == b.log_likelihood_history_
    proba = a.predict_proba(U, Y)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_array_equal(a.predict(U, Y), proba.argmax(1))
    assert np.isclose(a.score(U, Y) * len(Y), a.log_likelihood_history_[-1])
    assert a.bic(U, Y) == pytest.approx(-2 * a.log_likelihood_history_[-1] + a.num_parameters() * np.log(150 * 60))
    assert a.markov_parameters(9).shape == (3, 9, 1, 1)
    s1, s2 = a.sample(20, 30, random_state=1), a.sample(20, 30, random_state=1)
    np.testing.assert_array_equal(s1[1][0], s2[1][0])
    assert len(s1[0]) == 20 and s1[1][0].shape == (30, 1) and set(s1[2]) <= {0, 1, 2}


def test_bad_input_is_refused_with_a_clear_error():
    w, systems = random_mixture("small", 2, noise=0.3)
    U, Y, _ = sample_trials(w, systems, 30, 40, 3)
    with pytest.raises(ValueError, match="shorter than n_lags"):
        MoLDS(3, 2).fit([u[:4] for u in U], [y[:4] for y in Y])
    with pytest.raises(ValueError, match="number of trials"):
        MoLDS(31, 2).fit(U, Y)
    with pytest.raises(ValueError, match="different lengths"):
        MoLDS(2, 2).fit(U, [y[:-1] for y in Y])
    with pytest.raises(ValueError, match="trials of inputs"):
        MoLDS(2, 2).fit(U[:-1], Y)
    with pytest.raises(ValueError, match="constant"):
        MoLDS(2, 2).fit(U, [np.column_stack([y, np.ones(len(y))]) for y in Y])
    with pytest.raises(ValueError, match="NaN"):
        MoLDS(2, 2).fit(U, [np.where(np.arange(len(y))[:, None] == 3, np.nan, y) for y in Y])
    with pytest.raises(ValueError, match="at most m \\* n_lags"):
        MoLDS(7, 2).fit(U, Y)
    with pytest.raises(ValueError, match="needs inputs"):
        MoLDS(2, 2).fit(None, Y)
    with pytest.raises(RuntimeError, match="not fitted"):
        MoLDS(2, 2).predict(U, Y)
    fitted = MoLDS(2, 2, init="random", max_iter=2, random_state=0).fit(U, Y)
    with pytest.raises(ValueError, match="fitted on 1 inputs"):
        fitted.predict(None, Y)


@pytest.fixture(scope="module")
def grasp():
    path = shared_file("reach_to_grasp.nwb")
    return sip.read_nwb_units(path), sip.read_nwb_trials(path)


def test_cluster_trials_finds_the_grip_types_of_real_reach_to_grasp_trials(grasp, tmp_path):
    """The instruction cue is the systems' input (one pulse per trial); the grip it instructs is never
    shown. The clusters carry clearly more information about the grip than shuffled grips."""
    sorting, trials = grasp
    inputs = sip.event_inputs(trials, ["cue_on_time"], 0.1)
    result = sip.cluster_trials(sorting, trials, inputs=inputs, bin_size=0.1, n_pcs=3, max_components=4, max_iter=40)
    assert sorted(result.bic) == [1, 2, 3, 4] and result.n_components == min(result.bic, key=result.bic.get)
    assert len(result.labels) == len(trials) and result.posteriors.shape == (len(trials), result.n_components)
    info = sip.label_information(result.labels, trials["grip_type"].values, n_permutations=200)
    assert info["p_value"] < 0.01 and info["mutual_information_bits"] > 5 * info["shuffled_mean_bits"] + 0.1
    frame = result.to_dataframe()
    assert list(frame.columns[:3]) == ["start_time", "stop_time", "label"]
    widget = result.plot()
    widget.figure.savefig(tmp_path / "clusters.png")
    assert (tmp_path / "clusters.png").stat().st_size > 10_000


def test_cluster_trials_bad_input(grasp):
    sorting, trials = grasp
    with pytest.raises(ValueError, match="fewer than 2 bins"):
        sip.cluster_trials(sorting, np.array([[0.0, 0.05], [3.5, 5.0]]), bin_size=0.05)
    with pytest.raises(ValueError, match="No trial holds a spike"):
        sip.cluster_trials(sorting, np.array([[1e6, 1e6 + 1], [2e6, 2e6 + 1]]), bin_size=0.1, n_components=1)
    with pytest.raises(ValueError, match="training trials"):
        sip.cluster_trials(sorting, trials.iloc[:5], bin_size=0.1, max_components=6)
    with pytest.raises(ValueError, match="lacks the columns"):
        sip.cluster_trials(sorting, trials.drop(columns=["stop_time"]))
    behaviour = sip.Behavior(np.arange(0, 10, 0.01), np.random.default_rng(0).standard_normal(1000))
    with pytest.raises(ValueError, match="reaches outside the behaviour"):
        sip.cluster_trials(sorting, trials, inputs=behaviour, bin_size=0.1)
    # a silent trial is kept and reported
    with_empty = np.vstack([trials[["start_time", "stop_time"]].to_numpy()[:30], [[1e6, 1e6 + 1.5]]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = sip.cluster_trials(sorting, with_empty, bin_size=0.1, n_components=1, max_iter=3)
    assert list(result.empty_trials) == [30] and any("hold no spike" in str(c.message) for c in caught)


def test_trials_from_movement_onsets_and_events():
    t = np.arange(0, 20, 0.01)
    speed = np.zeros_like(t)
    onsets = [2.0, 7.5, 13.0]
    for o in onsets:  # a bell-shaped reach of 0.6 s starting at o
        inside = (t >= o) & (t < o + 0.6)
        speed[inside] = np.sin(np.pi * (t[inside] - o) / 0.6) ** 2
    behaviour = sip.Behavior(t, np.column_stack([speed, 0 * speed]), name="hand_velocity")
    found = sip.movement_onsets(behaviour, fraction=0.2)
    level = 0.2 * np.percentile(speed, 95)  # the threshold as the docstring defines it
    expected = np.array(onsets) + 0.6 / np.pi * np.arcsin(np.sqrt(level))
    assert len(found) == 3 and np.all(np.abs(found - expected) < 0.011)
    np.testing.assert_allclose(sip.trials_from_events(found, 0.1, 0.5)[:, 1] - found, 0.5)


def test_cluster_trials_on_a_continuous_signal_finds_the_true_systems():
    """Latents laid end to end as a Behavior (as decoded behaviour or inferred rates would be), with
    the inputs as a second Behavior: the clusters are the generating systems."""
    w, systems = random_mixture("small", 11, noise=0.2)
    U, Y, labels = sample_trials(w, systems, 120, 60, 12)
    bin_size, gap = 0.1, 20
    starts = np.arange(120) * (60 + gap) * bin_size
    t = np.arange(120 * (60 + gap)) * bin_size + bin_size / 2
    values, drive = np.zeros((len(t), 1)), np.zeros((len(t), 1))
    for i, s in enumerate(starts):
        k = int(round(s / bin_size))
        values[k : k + 60], drive[k : k + 60] = Y[i], U[i]
    trials = np.column_stack([starts, starts + 60 * bin_size])
    result = sip.cluster_trials(
        sip.Behavior(t, values), trials, inputs=sip.Behavior(t, drive), bin_size=bin_size, n_pcs=None,
        max_components=4, max_iter=60,
    )  # fmt: skip
    assert result.n_components == 3
    assert clustering_accuracy(labels, result.labels) >= 0.95
