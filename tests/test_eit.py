"""EIT: the individual module is shared by every neuron (equivariant, any unit count, real M1's
171 units), transfer keeps it bit for bit and beats a frozen random one, neurons' latent
distributions reflect their tuning, the classifier, and the errors on bad input."""

import numpy as np
import pytest
import torch
from conftest import shared_file
from scipy.stats import spearmanr

import spikeinterface_poyo as sip
from spikeinterface_poyo.core.behavior import Behavior
from spikeinterface_poyo.models.eit.network import IndividualModule

#: narrower attention than the reference (6 x 64) so that CI's two cores train in seconds
SMALL = dict(heads=2, head_dim=16, seed=0)


def take(behavior: Behavior, start: int, stop: int | None = None) -> Behavior:
    return Behavior(behavior.timestamps[start:stop], behavior.values[start:stop], name=behavior.name)


@pytest.fixture(scope="module")
def source():
    """A pretrained EIT on one simulated animal (20 units, 5 min, behaviour at 10 Hz)."""
    sorting, behavior = sip.simulate_session(duration=300, num_units=20, behavior_rate=10, seed=0)
    return sorting, sip.EITDecoder(max_epochs=10, **SMALL).fit(sorting, behavior)


@pytest.fixture(scope="module")
def target():
    """Another animal: 30 units of other tunings; 2 min labelled, the last 30 % to test."""
    sorting, behavior = sip.simulate_session(duration=300, num_units=30, behavior_rate=10, seed=1)
    return sorting, take(behavior, 0, 1200), take(behavior, int(0.7 * len(behavior.timestamps)))


def individual_state(decoder) -> dict:
    return {k: v.clone() for k, v in decoder.network_.individual.state_dict().items()}


# ---- the individual module --------------------------------------------------------------------
@pytest.mark.parametrize("num_units", [10, 171])
def test_the_individual_module_is_permutation_equivariant_over_units(num_units):
    torch.manual_seed(0)
    module = IndividualModule(num_bins=8).eval()
    counts = torch.poisson(torch.full((4, 8, num_units), 2.0)) - 2.0
    order = torch.randperm(num_units)
    with torch.no_grad():
        latents, projections = module(counts)
        permuted_latents, permuted_projections = module(counts[:, :, order])
    assert latents.shape == (4, num_units, 8, 16) and projections.shape == (4, num_units, 8)
    assert torch.allclose(permuted_latents, latents[:, order], atol=1e-6)
    assert torch.allclose(permuted_projections, projections[:, order], atol=1e-6)


def test_a_fitted_individual_module_runs_unchanged_on_real_m1_and_on_any_subset(source):
    _, model = source
    path = shared_file("m1_center_out.nwb")
    m1 = sip.read_nwb_units(path)
    times = sip.read_nwb_behavior(path, "hand_velocity").timestamps[100:600:5]
    assert m1.get_num_units() == 171
    latents, projections = model.individual_latents(m1, times)
    assert latents.shape == (100, 171, 8, 16) and np.isfinite(latents).all()
    ten = m1.unit_ids[[5, 170, 0, 42, 99, 3, 150, 77, 12, 60]]  # ten units, in another order
    sub_latents, sub_projections = model.individual_latents(m1.select_units(ten), times)
    index = [list(m1.unit_ids).index(u) for u in ten]
    np.testing.assert_allclose(sub_latents, latents[:, index], atol=1e-6)
    np.testing.assert_allclose(sub_projections, projections[:, index], atol=1e-6)


# ---- transfer -----------------------------------------------------------------------------------
def test_pretrained_individual_module_transfers_better_than_a_frozen_random_one(source, target):
    _, model = source
    sorting, labelled, test = target
    before = individual_state(model)
    transferred = sip.EITDecoder.transfer_from(model, max_epochs=30).fit(sorting, labelled)
    after = individual_state(transferred)
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit for bit, through training
    assert all(torch.equal(before[k], individual_state(model)[k]) for k in before)  # the source is untouched
    random = sip.EITDecoder(max_epochs=30, population=False, freeze_individual=True, **SMALL)
    random.fit(sorting, labelled)
    pretrained_r2, random_r2 = transferred.score(sorting, test), random.score(sorting, test)
    assert pretrained_r2 >= random_r2 + 0.05, (pretrained_r2, random_r2)

    # permuting the target's units: the same decoded values from a fitted model, and the same
    # quality from a transfer fitted on the permuted, renamed units
    ids = sorting.unit_ids
    shuffled = sorting.select_units(ids[np.random.default_rng(0).permutation(len(ids))])
    decoded = transferred.predict(sorting, test.timestamps).values
    np.testing.assert_array_equal(transferred.predict(shuffled, test.timestamps, session_id="session").values, decoded)
    renamed = shuffled.rename_units([f"n{i}" for i in range(len(ids))])
    again = sip.EITDecoder.transfer_from(model, max_epochs=30).fit(renamed, labelled)
    assert again.score(renamed, test) == pytest.approx(pretrained_r2, abs=0.03)


def test_transfer_with_a_new_population_module_and_errors(source, target):
    sorting, model = source
    target_sorting, labelled, _ = target
    with_population = sip.EITDecoder.transfer_from(model, population=True, max_epochs=1).fit(target_sorting, labelled)
    assert with_population.network_.population is not None
    assert not any(p.requires_grad for p in with_population.network_.individual.parameters())
    with pytest.raises(ValueError, match="bins of 0.1 s, not 0.05 s"):
        sip.EITDecoder.transfer_from(model, bin_size=0.05)
    with pytest.raises(ValueError, match="not fitted"):
        sip.EITDecoder.transfer_from(sip.EITDecoder())
    with pytest.raises(ValueError, match=r"not units of session.*sip.EITDecoder.transfer_from\(model\)"):
        model.predict(target_sorting, labelled.timestamps, session_id="session")
    with pytest.raises(ValueError, match="exactly the 20 units.*For other units, fit sip.EITDecoder.transfer_from"):
        model.predict(sorting.select_units(sorting.unit_ids[:5]), labelled.timestamps, session_id="session")


def test_runs_are_deterministic_per_seed(target):
    sorting, labelled, test = target
    short = take(labelled, 0, 400)
    runs = [sip.EITDecoder(max_epochs=2, **{**SMALL, "seed": seed}).fit(sorting, short) for seed in (0, 0, 1)]
    decoded = [run.predict(sorting, test.timestamps[:50]).values for run in runs]
    np.testing.assert_array_equal(decoded[0], decoded[1])
    assert not np.allclose(decoded[0], decoded[2])


# ---- alignment ------------------------------------------------------------------------------------
def test_wasserstein_distances_between_neurons_follow_their_tuning(source, target):
    source_sorting, model = source
    target_sorting = target[0]
    distances = sip.neuron_alignment(model, source_sorting, target_sorting, num_samples=96)
    assert distances.shape == (20, 30) and (distances >= 0).all()
    self_distances = sip.neuron_alignment(model, source_sorting, source_sorting, num_samples=96)
    assert np.allclose(np.diag(self_distances), 0.0)  # the same windows on both sides: no cost

    # what a neuron's own latent distribution can show: its rate and tuning depth (not its
    # preferred direction, which only the joint activity of neurons carries)
    def tuning(sorting):
        return np.stack([np.log(sorting.get_property("baseline_hz")), sorting.get_property("gain")], axis=1)

    a, b = tuning(source_sorting), tuning(target_sorting)
    scale = np.concatenate([a, b]).std(axis=0)
    dissimilarity = np.linalg.norm((a[:, None] - b[None]) / scale, axis=-1)
    rho = spearmanr(distances.ravel(), dissimilarity.ravel()).statistic
    assert rho > 0.3, rho


# ---- classification ------------------------------------------------------------------------------
def direction_labels(behavior: Behavior, sectors: int = 8) -> Behavior:
    """The sector (0-7) of the velocity's direction, where the animal moves faster than its median."""
    vx, vy = behavior.values.T
    fast = np.hypot(vx, vy) > np.median(np.hypot(vx, vy))
    sector = np.floor((np.arctan2(vy, vx) + np.pi) / (2 * np.pi / sectors)) % sectors
    return Behavior(behavior.timestamps[fast], sector[fast], name="direction")


def test_the_classifier_decodes_eight_directions_and_reloads(tmp_path):
    sorting, behavior = sip.simulate_session(duration=300, num_units=30, behavior_rate=10, seed=3)
    labels = direction_labels(behavior)
    n = len(labels.timestamps)
    train, test = take(labels, 0, int(0.7 * n)), take(labels, int(0.7 * n))
    classifier = sip.EITClassifier(max_epochs=15, **SMALL).fit(sorting, train)
    assert classifier.classes_.tolist() == list(range(8))
    accuracy = classifier.score(sorting, test)
    assert accuracy > 0.35, accuracy  # chance: 0.125
    proba = classifier.predict_proba(sorting, test.timestamps)
    assert proba.shape == (len(test.timestamps), 8) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    decoded = classifier.predict(sorting, test.timestamps).values[:, 0]
    np.testing.assert_array_equal(decoded, classifier.classes_[proba.argmax(axis=1)])
    loaded = sip.load_model(sip.save_model(classifier, tmp_path / "classifier"))
    assert type(loaded) is sip.EITClassifier
    np.testing.assert_allclose(loaded.predict_proba(sorting, test.timestamps), proba, atol=1e-6)

    late_only = Behavior(train.timestamps, np.where(np.arange(len(train.timestamps)) > 0.95 * len(train.timestamps),
                                                   9, train.values[:, 0]))  # fmt: skip
    with pytest.raises(ValueError, match=r"Class\(es\) \[9\] appear only in the last 10%"):
        sip.EITClassifier(max_epochs=1, **SMALL).fit(sorting, late_only)
    with pytest.raises(ValueError, match="whole numbers"):
        sip.EITClassifier(max_epochs=1, **SMALL).fit(sorting, Behavior(train.timestamps, train.values + 0.5))
    with pytest.raises(ValueError, match="one column of class labels"):
        sip.EITClassifier(max_epochs=1, **SMALL).fit(sorting, behavior)
    with pytest.raises(ValueError, match=r"\[11\] were never seen in training"):
        classifier.score(sorting, Behavior(test.timestamps, np.full(len(test.timestamps), 11.0)))


# ---- bad input --------------------------------------------------------------------------------------
def test_windows_must_hold_whole_bins_and_fit_in_the_recording(target):
    sorting, labelled, _ = target
    with pytest.raises(ValueError, match="not a whole number of 0.1 s bins"):
        sip.EITDecoder(window=0.75).fit(sorting, labelled)
    assert sip.EITDecoder(window=0.5).num_lags == 5
    assert sip.EITDecoder(window=0.5).window_length == pytest.approx(0.5)
    short = sorting.frame_slice(0, int(2.0 * sorting.sampling_frequency))
    with pytest.raises(ValueError, match="shorter than one window"):
        sip.EITDecoder(window=3.0).fit(short, take(labelled, 0, 20))
