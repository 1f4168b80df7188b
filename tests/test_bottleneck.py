"""BrainBits bottleneck curves: the bottleneck is strict, the Wiener form reaches the reduced-rank
optimum, W = I is the decoder without a bottleneck, random baselines score nothing on real M1, a
simulation with two tuning directions needs two dimensions (three with gain noise, which PCA
misses), POYO takes the bottleneck as value tokens (and a squeeze of its latents, and a frozen
pretrained backbone), and every bad input is named."""

import copy
import json

import numpy as np
import pytest
import torch
from conftest import shared_file
from scipy.linalg import subspace_angles

import spikeinterface_poyo as sip
from spikeinterface_poyo.analysis.bottleneck import BinnedPOYO, BottleneckDecoder, bottleneck_curve
from spikeinterface_poyo.analysis.bottleneck.curve import block_errors, block_sums, drawn_r2, k_reaching
from spikeinterface_poyo.analysis.bottleneck.decoders import decoder_template
from spikeinterface_poyo.analysis.bottleneck.layers import null_space
from spikeinterface_poyo.core.metrics import r2_per_dimension
from spikeinterface_poyo.core.spikes import single_segment_tokens
from spikeinterface_poyo.models.baselines import GRUDecoder, MLPDecoder, WienerFilter
from spikeinterface_poyo.models.baselines.common import training_samples, validation_cut
from spikeinterface_poyo.models.poyo import POYO

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: short training, enough for these small sessions
QUICK = dict(max_epochs=30, patience=6)
TEMPLATES = {
    "wiener": lambda lags: WienerFilter(lags=lags),
    "mlp": lambda lags: MLPDecoder(lags=lags, hidden=64),
    "gru": lambda lags: GRUDecoder(lags=lags),
    "poyo": lambda lags: BinnedPOYO("tiny", lags=lags),
}
#: POYO's tiny preset learns the cosine simulation in about 10 epochs at this rate and batch
POYO_QUICK = dict(max_epochs=10, patience=5, lr=3e-3, batch_size=256)


@pytest.fixture(scope="module")
def cosine():
    """Every unit log-linear (cosine) tuned to a 2-D velocity, spikes at the time they encode."""
    return sip.simulate_session(duration=100.0, num_units=40, seed=0, lag=0.0)


def tuning_directions(sorting) -> np.ndarray:
    """(N, 2) true tuning directions in the decoders' input space (standardised square-root counts).

    A unit's log rate moves by ``gain * cos(angle - preferred)`` per unit of velocity; its
    standardised square-root count then moves by about ``sqrt(rate)`` times that (the square root
    halves the log slope and the count's spread is about 1/2 for large counts; for small ones the
    mean count is the rate, over a spread of sqrt(rate)), up to a factor shared by every unit.
    """
    angle, gain = sorting.get_property("preferred_direction"), sorting.get_property("gain")
    scale = np.sqrt(sorting.get_property("baseline_hz")) * gain
    return np.stack([np.cos(angle), np.sin(angle)], axis=1) * scale[:, None]


# ---- the bottleneck --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["wiener", "mlp", "gru", "poyo"])
def test_predictions_do_not_move_along_the_null_space_of_w(cosine, name):
    sorting, behavior = cosine
    tokens = single_segment_tokens(sorting)
    model = BottleneckDecoder(TEMPLATES[name](3), k=3, training=dict(max_epochs=2)).fit(sorting, behavior)
    x = model.features(tokens, behavior.timestamps[:500])
    base = model.predict_features(x)
    rng = np.random.default_rng(0)
    null = null_space(model.map_)  # (N, N - 3)
    assert null.shape == (40, 37)
    # a different large move in every bin and every lag, all of it where W does not look
    move = np.einsum("nj,tlj->tln", null, rng.normal(0, 3.0, (*x.shape[:2], null.shape[1])))
    moved = model.predict_features(x + torch.from_numpy(move.astype(np.float32)))
    np.testing.assert_allclose(moved, base, atol=1e-4 * np.abs(base).max())
    # the same size of move inside the row space of W does change them (the check can fail)
    rows = np.linalg.qr(model.map_.T)[0]
    seen = np.einsum("nj,tlj->tln", rows, rng.normal(0, 3.0, (*x.shape[:2], 3)))
    assert (
        np.abs(model.predict_features(x + torch.from_numpy(seen.astype(np.float32))) - base).max()
        > 0.1 * np.abs(base).max()
    )


def test_wiener_with_one_lag_reaches_the_reduced_rank_regression_optimum(cosine):
    sorting, behavior = cosine
    tokens = single_segment_tokens(sorting)
    t, y = training_samples(tokens, behavior)
    full_batch = dict(batch_size=len(t), max_epochs=600, patience=600)
    model = BottleneckDecoder(WienerFilter(lags=1, val_fraction=0.2), k=1, training=full_batch)
    model.fit_samples(tokens, t, y)
    cut = validation_cut(len(t), 0.2)
    x = model.features(tokens, t[:cut]).numpy().reshape(cut, -1).astype(np.float64)
    z = (y[:cut] - model.y_mean_) / model.y_scale_  # the standardised targets it is trained on
    # rank-1 regression in closed form: least squares, then its fitted values projected on their
    # first principal axis (the intercept stays free)
    design = np.hstack([x, np.ones((cut, 1))])
    fitted = design @ np.linalg.lstsq(design, z, rcond=None)[0]
    axis = np.linalg.svd(fitted - fitted.mean(axis=0), full_matrices=False)[2][:1].T
    optimum = fitted.mean(axis=0) + (fitted - fitted.mean(axis=0)) @ axis @ axis.T
    best = np.mean(r2_per_dimension(z, optimum))
    reached = np.mean(r2_per_dimension(y[:cut], model.predict_samples(tokens, t[:cut])))
    assert reached == pytest.approx(best, abs=2e-3)
    assert best < np.mean(r2_per_dimension(z, fitted)) - 0.05  # rank 1 binds: a 2-D behaviour


@pytest.mark.parametrize("name", ["wiener", "mlp", "gru", "poyo"])
def test_the_identity_bottleneck_is_the_decoder_without_one(cosine, name):
    sorting, behavior = cosine
    train, test = behavior.split(0.7)
    template = TEMPLATES[name](2)
    short = dict(max_epochs=4)
    if name == "wiener":  # the filter's gradient-trained form, without a bottleneck
        plain = BottleneckDecoder(template, bottleneck="none", training=short, seed=5).fit(sorting, train)
    else:  # the package's decoder itself
        plain = type(template)(**{**template.get_params(), **short, "seed": 5}).fit(sorting, train)
    identity = BottleneckDecoder(template, bottleneck="identity", training=short, seed=5).fit(sorting, train)
    np.testing.assert_array_equal(identity.map_, np.eye(40))
    expected = plain.predict(sorting, test.timestamps).values
    np.testing.assert_allclose(identity.predict(sorting, test.timestamps).values, expected, atol=1e-5)
    other_seed = BottleneckDecoder(template, bottleneck="identity", training=short, seed=6).fit(sorting, train)
    assert np.abs(other_seed.predict(sorting, test.timestamps).values - expected).max() > 1e-3


# ---- curves ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def m1_curve():
    path = shared_file("m1_center_out.nwb")
    sorting, behavior = sip.read_nwb_units(path), sip.read_nwb_behavior(path, "hand_velocity")
    curve = bottleneck_curve(sorting, behavior, MLPDecoder(lags=5, hidden=64), ks=(2, 8), seeds=(0,),
                             ceilings=("none",), training=dict(max_epochs=6, patience=3))  # fmt: skip
    return curve, sorting


def test_random_baselines_score_nothing_on_real_m1(m1_curve):
    curve, sorting = m1_curve
    assert curve.baselines["noise"][0] <= 0.05
    assert curve.baselines["shifted"][0] <= 0.05
    assert curve.settings["shifts_s"][0] >= 10.0
    assert curve.ceilings["none"][0] > 0.7
    assert curve.scores[1, 0] > curve.scores[0, 0] > 0.5  # wider is better, and both far above the baselines
    assert np.isfinite(curve.reference)  # the behaviour-only line is there, and normalises nothing
    p = curve.p()
    assert p == pytest.approx(
        (curve.scores[:, 0] - curve.baselines["noise"]) / (curve.ceilings["none"] - curve.baselines["noise"])
    )
    k90 = curve.k_at(0.9, n_boot=300)
    assert 2 <= k90.low <= k90.k <= k90.high
    summary = json.loads(json.dumps(curve.summary(n_boot=100)))
    assert set(summary) >= {"k_50", "k_90", "p(2)", "baselines", "ceilings", "reference"}
    importance = curve.unit_importance(8)
    assert list(importance.index) == [str(u) for u in sorting.unit_ids]
    assert importance.sum() == pytest.approx(1.0)
    table = curve.to_dataframe()
    assert len(table) == 2 + 2 + 1 + 1  # two widths, two baselines, one ceiling, the reference
    assert set(table["kind"]) == {"bottleneck", "baseline", "ceiling", "reference"}


def test_the_curve_plots_on_a_log_k_axis_with_dashed_baselines_and_ceilings(m1_curve):
    import matplotlib

    matplotlib.use("Agg")
    curve, _ = m1_curve
    for normalised in (False, True):
        widget = curve.plot(normalised=normalised)
        assert widget.ax.get_xscale() == "log"
        dashed = [line for line in widget.ax.get_lines() if line.get_linestyle() == "--"]
        assert len(dashed) == (2 if normalised else 3)  # baseline and ceiling; or both baselines and the ceiling
    matplotlib.pyplot.close("all")


@pytest.mark.parametrize("name", ["mlp", "gru"])
def test_two_tuning_directions_need_two_dimensions_and_w_finds_them(cosine, name):
    sorting, behavior = cosine
    curve = bottleneck_curve(sorting, behavior, TEMPLATES[name](1), ks=(1, 2, 3), seeds=(0,), baselines=("noise",),
                             ceilings=("none",), reference=False, training=QUICK)  # fmt: skip
    assert curve.k_at(0.9, n_boot=0).k <= 3
    assert curve.p(1) < 0.8  # one dimension is not enough: the behaviour is 2-D
    angles = curve.map_angles(2, tuning_directions(sorting))
    assert angles.max() < 30.0, angles


def test_gain_noise_needs_a_third_dimension_which_pca_misses():
    settings = dict(duration=100.0, num_units=120, seed=0, lag=0.0, firing_rates=(5.0, 30.0))
    template = MLPDecoder(lags=1, hidden=64)
    runs = dict(ks=(2, 3), seeds=(0,), baselines=("noise",), ceilings=("none",), reference=False, training=QUICK)
    sorting, behavior = sip.simulate_session(**settings, gain_noise=1.0)
    noisy = bottleneck_curve(sorting, behavior, template, **runs)
    clean = bottleneck_curve(*sip.simulate_session(**settings), template, **runs)
    # the third dimension carries the population gain that the decoder divides out (0.03-0.07 R² over
    # simulation seeds 0-2); without gain noise it adds nothing (under 0.003)
    assert noisy.scores[1, 0] - noisy.scores[0, 0] > 0.02
    assert abs(clean.scores[1, 0] - clean.scores[0, 0]) < 0.01
    assert noisy.k_at(0.9, n_boot=0).k <= 3
    # unsupervised, the widest direction is the gain (every unit's sqrt count scales with sqrt(rate)),
    # so a 2-D PCA bottleneck keeps the gain and loses a velocity direction
    pca = bottleneck_curve(sorting, behavior, template, **{**runs, "ks": (2,), "baselines": (), "ceilings": ()},
                           bottleneck="pca")  # fmt: skip
    gain_direction = np.sqrt(sorting.get_property("baseline_hz"))[:, None]
    assert np.degrees(subspace_angles(pca.maps[2][0][:1].T, gain_direction)).max() < 30.0
    assert pca.scores[0, 0] < noisy.scores[0, 0] - 0.2  # the same test samples


def test_internal_state_latents_fill_a_pca_bottleneck_but_not_the_supervised_one():
    # two slow latents unrelated to the behaviour, each moving log rates by 0.7 per unit loading: with the gain
    # they carry more variance than the velocity, so the first three principal axes are mostly theirs
    sorting, behavior = sip.simulate_session(duration=100.0, num_units=120, seed=0, lag=0.0, firing_rates=(5.0, 30.0),
                                             gain_noise=1.0, state_dims=2, state_noise=0.7)  # fmt: skip
    template = MLPDecoder(lags=1, hidden=64)
    runs = dict(ks=(3,), seeds=(0,), reference=False, training=QUICK)
    supervised = bottleneck_curve(sorting, behavior, template, baselines=("noise",), ceilings=("none",), **runs)
    pca = bottleneck_curve(sorting, behavior, template, baselines=(), ceilings=(), bottleneck="pca", **runs)
    # measured over simulation seeds 0-2: supervised 0.66-0.80 (ceiling 0.73-0.79), PCA -0.06 to 0.20
    assert supervised.p(3) > 0.8
    assert pca.scores[0, 0] < supervised.scores[0, 0] - 0.3
    scale = np.sqrt(sorting.get_property("baseline_hz"))[:, None]
    state = np.stack([sorting.get_property(f"state_loading_{j}") for j in range(2)], axis=1) * scale
    # the supervised map looks past the latents (81-88 degrees measured), PCA's leans on them
    assert np.degrees(subspace_angles(supervised.maps[3][0].T, state)).min() > 60.0
    assert np.degrees(subspace_angles(pca.maps[3][0].T, np.hstack([scale, state]))).min() < 30.0


# ---- POYO -------------------------------------------------------------------------------------


def test_poyo_reads_two_tuning_directions_through_two_value_tokens(cosine):
    sorting, behavior = cosine
    curve = bottleneck_curve(sorting, behavior, TEMPLATES["poyo"](1), ks=(1, 2), seeds=(0,), baselines=("noise",),
                             ceilings=("none",), reference=False, training=POYO_QUICK)  # fmt: skip
    r1, r2 = curve.scores[:, 0]
    # measured over training seeds 0-2: R²(1) 0.31-0.35, R²(2) 0.67-0.70, noise -0.08 to -0.06, ceiling 0.69-0.70,
    # k_90 1.70-1.79, p(1) 0.50-0.54, angles 12-20 degrees
    assert r2 > r1 + 0.2
    assert r2 > curve.baselines["noise"][0] + 0.5
    assert curve.k_at(0.9, n_boot=0).k <= 3
    assert curve.p(1) < 0.8
    assert curve.map_angles(2, tuning_directions(sorting)).max() < 30.0
    assert curve.decoder == "poyo" and "BrainBits" in curve.settings["width"]


@pytest.fixture(scope="module")
def pretrained(cosine):
    """A POYO trained on the first 70 % of the cosine session's binned counts (every unit a value
    token, one lag)."""
    sorting, behavior = cosine
    return BinnedPOYO("tiny", lags=1, **POYO_QUICK).fit(sorting, behavior.split(0.7)[0]).network_.backbone


def test_a_frozen_backbone_stays_bit_identical_and_only_w_and_the_channel_embeddings_train(cosine, pretrained):
    sorting, behavior = cosine
    train, test = behavior.split(0.7)
    before = copy.deepcopy(pretrained.state_dict())
    model = BottleneckDecoder(BinnedPOYO.around(pretrained, freeze_backbone=True), k=2, training=POYO_QUICK)
    model.fit(sorting, train)
    network = model.network_
    trained = sorted(name for name, p in network.named_parameters() if p.requires_grad)
    assert trained == ["bottleneck.linear.bias", "bottleneck.linear.weight", "network.values.channel",
                       "network.values.value"]  # fmt: skip
    for state in (network.network.backbone.state_dict(), pretrained.state_dict()):  # the copy and the original
        assert state.keys() == before.keys()
        assert all(torch.equal(state[name], before[name]) for name in before)
    torch.manual_seed(model.seed)  # the initial weights, drawn as fit draws them
    initial = model._build_network(torch.zeros(1, 1, 40), 2)
    for name in trained:
        assert not torch.equal(network.get_parameter(name), initial.get_parameter(name)), name
    # the frozen POYO still decodes through two learned directions (0.68-0.69 measured over seeds 0-2)
    assert sip.r2_score(test, model.predict(sorting, test.timestamps))["mean"] > 0.5


def test_the_latent_squeeze_is_strict_and_labelled_as_another_quantity(cosine, pretrained):
    sorting, behavior = cosine
    tokens = single_segment_tokens(sorting)
    model = BottleneckDecoder(pretrained, k=2, bottleneck="latent", training=dict(max_epochs=2)).fit(sorting, behavior)
    assert model.map_ is None
    squeeze = model.network_.squeeze
    assert squeeze.down.weight.shape == (2, pretrained.dim)
    x = model.features(tokens, behavior.timestamps[:300])
    base = model.predict_features(x)
    null = torch.from_numpy(null_space(squeeze.down.weight.detach().numpy()).astype(np.float32))  # (dim, dim - 2)
    generator = torch.Generator().manual_seed(0)

    def move(module, args):  # every latent moved far, where the squeeze does not look
        (latents,) = args
        return (latents + torch.randn(*latents.shape[:-1], null.shape[1], generator=generator) @ null.T * 3.0,)

    hook = squeeze.register_forward_pre_hook(move)
    try:
        np.testing.assert_allclose(model.predict_features(x), base, atol=1e-4 * np.abs(base).max())
        null = torch.linalg.qr(squeeze.down.weight.detach().T)[0]  # the same moves where it looks
        assert np.abs(model.predict_features(x) - base).max() > 0.1 * np.abs(base).max()
    finally:
        hook.remove()

    curve = bottleneck_curve(sorting, behavior, pretrained, ks=(1, 2), seeds=(0,), baselines=(), ceilings=(),
                             bottleneck="latent", reference=False, training=dict(max_epochs=2))  # fmt: skip
    assert curve.maps == {} and curve.scores.shape == (2, 1)
    assert "latent token" in curve.settings["width"] and "not BrainBits' k" in curve.settings["width"]
    assert json.loads(json.dumps(curve.settings))["decoder_params"]["model"]["dim"] == pretrained.dim
    with pytest.raises(ValueError, match="latent-squeeze curve has no maps on the units"):
        curve.unit_importance(2)


def test_poyo_is_taken_by_name_as_a_model_or_as_an_estimator(pretrained):
    assert decoder_template("poyo").get_params()["preset"] == "small"
    assert decoder_template(sip.POYODecoder(preset="tiny")).preset == "tiny"
    around = decoder_template(pretrained)
    assert around.model is pretrained and around.lags == 1  # its bins fill the model's window
    assert decoder_template(BinnedPOYO("tiny", lags=3)).get_params()["lags"] == 3


# ---- the arithmetic --------------------------------------------------------------------------


def test_k_is_interpolated_in_log_k():
    assert k_reaching([1, 4, 16], [0.5, 1.0, 1.0], 0.75) == pytest.approx(2.0)
    assert k_reaching([2, 4], [0.95, 1.0], 0.9) == 2.0  # reached at the narrowest width
    assert np.isnan(k_reaching([1, 2], [0.1, 0.5], 0.9))  # never reached


def test_block_statistics_give_back_the_pooled_r2():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(200, 2))
    predictions = y + rng.normal(0, 0.5, (3, 2, 200, 2))  # 3 models, 2 seeds
    blocks = (np.arange(200) * 8) // 200
    errors = block_errors(y, predictions, blocks, 8)
    every_block_once = drawn_r2(errors, *block_sums(y, blocks, 8), np.ones((1, 8)), np.full((1, 2), 0.5))
    direct = [np.mean([np.mean(r2_per_dimension(y, p)) for p in seeds]) for seeds in predictions]
    np.testing.assert_allclose(every_block_once[0], direct)


# ---- bad input -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    return sip.simulate_session(duration=60.0, num_units=8, seed=3)


@pytest.mark.parametrize("name", ["wiener", "poyo"])
def test_widths_beyond_the_units_are_clipped_and_said(small, name):
    sorting, behavior = small
    with pytest.warns(UserWarning, match=r"ks \[20, 50\] exceed the 8 units and are clipped to 8"):
        curve = bottleneck_curve(sorting, behavior, TEMPLATES[name](1), ks=(2, 20, 50), seeds=(0,),
                                 baselines=("noise",), ceilings=("none",), reference=False,
                                 training=dict(max_epochs=2), n_blocks=5)  # fmt: skip
    assert curve.ks.tolist() == [2, 8]
    with pytest.raises(ValueError, match="k = 9 is more than the 8 units"):
        BottleneckDecoder(TEMPLATES[name](1), k=9, training=dict(max_epochs=1)).fit(sorting, behavior)
    with pytest.raises(ValueError, match="ks must be positive integers"):
        bottleneck_curve(sorting, behavior, "wiener", ks=(0, 2))


def test_decoders_that_cannot_take_a_bottleneck_are_named(small):
    sorting, behavior = small
    with pytest.raises(ValueError, match="A dict cannot take a bottleneck.*needs a decoder on binned counts"):
        bottleneck_curve(sorting, behavior, {"hidden": 64})
    with pytest.raises(ValueError, match=r"Unknown decoder 'lstm'.*\['gru', 'mlp', 'poyo', 'wiener'\]"):
        bottleneck_curve(sorting, behavior, "lstm")
    with pytest.raises(ValueError, match="already has a bottleneck"):
        bottleneck_curve(sorting, behavior, BottleneckDecoder("mlp"))


def test_too_little_data_for_the_bootstrap_is_an_error(small):
    sorting, behavior = small
    short = behavior.time_slice(0.0, 8.0)  # 400 samples: 120 in the test part
    with pytest.raises(ValueError, match="120 samples: too few for the bootstrap's 20 contiguous blocks"):
        bottleneck_curve(sorting, short, "mlp", n_blocks=20)
    with pytest.raises(ValueError, match="n_blocks must be an integer of at least 4"):
        bottleneck_curve(sorting, behavior, "mlp", n_blocks=2)
    with pytest.raises(ValueError, match="too short to shift them circularly by at least 40 s"):
        bottleneck_curve(sorting, behavior, "mlp", min_shift_s=40.0)


def test_behaviour_that_does_not_overlap_the_spikes_is_an_error(small):
    sorting, behavior = small
    later = sip.Behavior(behavior.timestamps + 1000.0, behavior.values, name="velocity")
    with pytest.raises(ValueError, match="does not overlap the spikes.*same clock"):
        bottleneck_curve(sorting, later, "gru")
    with pytest.raises(TypeError, match="behavior must be a sip.Behavior"):
        bottleneck_curve(sorting, behavior.values, "gru")


def test_bad_settings_are_named(small):
    sorting, behavior = small
    with pytest.raises(ValueError, match=r"Unknown baselines \['random'\]"):
        bottleneck_curve(sorting, behavior, "gru", baselines=("random",))
    with pytest.raises(ValueError, match=r"Unknown ceilings \['full'\]"):
        bottleneck_curve(sorting, behavior, "gru", ceilings=("full",))
    with pytest.raises(ValueError, match=r"training= has unknown settings \['epochs'\]"):
        BottleneckDecoder("gru", training=dict(epochs=3)).fit(sorting, behavior)
    with pytest.raises(ValueError, match="bottleneck must be one of"):
        BottleneckDecoder("gru", bottleneck="random").fit(sorting, behavior)
    with pytest.raises(ValueError, match="test_fraction must be in"):
        bottleneck_curve(sorting, behavior, "gru", test_fraction=1.0)


def test_bad_poyo_settings_are_named(small, pretrained):
    sorting, behavior = small
    with pytest.raises(ValueError, match=r"ks \[33, 64\] exceed POYO's width dim = 32: a latent squeeze"):
        bottleneck_curve(sorting, behavior, BinnedPOYO("tiny"), ks=(2, 33, 64), bottleneck="latent")
    with pytest.raises(ValueError, match="latent squeeze of width k = 33 is more than POYO's width dim = 32"):
        BottleneckDecoder(BinnedPOYO("tiny", lags=1), k=33, bottleneck="latent").fit(sorting, behavior)
    with pytest.raises(ValueError, match="bottleneck='latent' squeezes POYO's latent tokens; a MLPDecoder has none"):
        bottleneck_curve(sorting, behavior, "mlp", bottleneck="latent")
    with pytest.raises(ValueError, match="freeze_backbone=True needs a pretrained POYO to freeze: pass model="):
        bottleneck_curve(sorting, behavior, BinnedPOYO("tiny", freeze_backbone=True))
    with pytest.raises(ValueError, match="Unknown preset 'huge'"):
        bottleneck_curve(sorting, behavior, BinnedPOYO("huge"))
    with pytest.raises(ValueError, match="model must be a POYO, got a MLPDecoder"):
        bottleneck_curve(sorting, behavior, BinnedPOYO(model=MLPDecoder()))
    with pytest.raises(ValueError, match=r"10 bins of 0.05 s span 0.5 s, more than the POYO's 0.05 s window"):
        bottleneck_curve(sorting, behavior, BinnedPOYO(model=pretrained))
    wider = POYO.from_preset("tiny", dim_out=3, sequence_length=0.05)
    wider.session_emb.extend_vocab(["a", "b"])
    with pytest.raises(ValueError, match=r"decodes 2 sessions and 'session' is none of them.*\['a', 'b'\]"):
        bottleneck_curve(sorting, behavior, wider)
    with pytest.raises(ValueError, match="reads out 3 dimensions and the behaviour has 2"):
        BottleneckDecoder(BinnedPOYO.around(wider, session_id="a"), training=dict(max_epochs=1)).fit(sorting, behavior)
