"""Self-supervised POYO: masking on spike tokens, the encoding head, pretraining with the
masked objective (alone or with behaviour), semi-supervised adaptation, and the rule that
held-out time is used by no stage."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import spikeinterface as si
import torch
from conftest import shared_file

import spikeinterface_poyo as sip
from spikeinterface_poyo.core.spikes import TokenType, sorting_to_tokens
from spikeinterface_poyo.models.masking import SCHEMES, Mask, draw_mask
from spikeinterface_poyo.models.poyo.masked import (
    BIN_SIZE,
    MaskedSpikesTask,
    encoding_bits_per_spike,
    masked_batch,
    poisson_nll,
    spike_sessions,
    window_counts,
)
from spikeinterface_poyo.models.poyo.model import POYO
from spikeinterface_poyo.models.poyo.tokenizer import collate_spike_windows
from spikeinterface_poyo.training.config import TrainingConfig

FAST = dict(max_epochs=2, max_time_s=None, progress_bar=False)


def _model_for(tokens, preset="tiny") -> POYO:
    torch.manual_seed(0)
    model = POYO.from_preset(preset, dim_out=2, encoding_head=True)
    model.unit_emb.extend_vocab(tokens.unit_ids)
    model.session_emb.extend_vocab([tokens.session_id])
    return model.eval()


@pytest.fixture(scope="module")
def regions_session():
    sorting, _ = sip.simulate_regions(duration=60, units_per_region=8, seed=3)
    return sorting, sorting_to_tokens(sorting, session_id="r")[0]


def test_window_counts_match_a_histogram(regions_session):
    _, tokens = regions_session
    starts = np.array([1.0, 7.3, 20.01])
    counts = window_counts(tokens, starts, 1.0, BIN_SIZE)
    assert counts.shape == (3, 50, tokens.num_units)
    for b, s in enumerate(starts):
        for u in (0, 5, tokens.num_units - 1):
            times = tokens.times[tokens.unit_index == u]
            edges = s + np.arange(51) * BIN_SIZE
            np.testing.assert_array_equal(counts[b, :, u], np.histogram(times, edges)[0])


def test_hidden_entries_drop_exactly_their_tokens(regions_session):
    _, tokens = regions_session
    starts = np.array([2.0, 30.0])
    vocab = np.arange(1, tokens.num_units + 1)
    rng = np.random.default_rng(0)
    hidden = rng.random((2, 50, tokens.num_units)) < 0.3
    full = collate_spike_windows(tokens, starts, 1.0, vocab)
    cut = collate_spike_windows(tokens, starts, 1.0, vocab, hidden=hidden, bin_size=BIN_SIZE)
    for b in range(2):
        kept = full["input_mask"][b].numpy()
        spikes = kept & (full["input_token_type"][b].numpy() == TokenType.SPIKE)
        units = full["input_unit_index"][b].numpy() - 1
        bins = np.clip(np.floor(full["input_timestamps"][b].numpy() / BIN_SIZE + 1e-9).astype(int), 0, 49)
        expected = spikes & ~hidden[b, bins, units]
        got = cut["input_mask"][b].numpy() & (cut["input_token_type"][b].numpy() == TokenType.SPIKE)
        assert got.sum() == expected.sum() and 0 < got.sum() < spikes.sum()


def test_causal_masks_hide_a_contiguous_future():
    mask = draw_mask("causal", (64, 50, 7), {}, np.random.default_rng(1), 0.3, future=True)
    assert np.array_equal(mask.hidden, mask.scored)
    for window in mask.hidden:
        bins = window.all(axis=1)
        assert window.any(axis=1).sum() == bins.sum() > 0  # whole bins, every unit
        cut = np.argmax(bins)
        assert bins[cut:].all() and not bins[:cut].any() and cut > 0
    assert abs(mask.hidden.all(axis=2).mean() - 0.3) < 0.06


def test_spikes_of_hidden_units_change_nothing_unscored_does_not_count(regions_session):
    """Intra-region masking hides everything outside a region: spikes added there reach
    neither the input nor the loss."""
    sorting, tokens = regions_session
    model = _model_for(tokens)
    starts = np.array([3.0, 11.0, 40.0])
    regions = spike_sessions(sorting, "r", 1.0)[0].regions
    counts = window_counts(tokens, starts, 1.0, BIN_SIZE)
    mask = draw_mask("intra_region", counts.shape, regions, np.random.default_rng(2), 0.3, region="driven")
    vocab = np.asarray(model.unit_emb.tokenizer(tokens.unit_ids))

    def loss(tok, cnt):
        batch = masked_batch(model, tok, vocab, starts, mask, cnt, BIN_SIZE)
        target, real = batch.pop("target"), batch.pop("target_mask")
        with torch.no_grad():
            return float(poisson_nll(model(**batch), target, real, BIN_SIZE))

    outside = np.flatnonzero(mask.hidden[0, 0] & ~mask.scored[0, 0])
    extra_times = np.sort(np.random.default_rng(3).uniform(3.0, 4.0, 200))
    extra_units = np.random.default_rng(4).choice(outside, 200)
    perturbed = copy.copy(tokens)
    order = np.argsort(np.concatenate([tokens.times, extra_times]), kind="stable")
    perturbed.times = np.concatenate([tokens.times, extra_times])[order]
    perturbed.unit_index = np.concatenate([tokens.unit_index, extra_units])[order]
    new_counts = window_counts(perturbed, starts, 1.0, BIN_SIZE)
    assert not np.array_equal(new_counts, counts)
    assert loss(tokens, counts) == loss(perturbed, new_counts)
    # a scored unit's spikes do change it
    scored_unit = np.flatnonzero(mask.scored[0, 0])[0]
    perturbed.unit_index = np.concatenate([tokens.unit_index, np.full(200, scored_unit)])[order]
    assert loss(tokens, counts) != loss(perturbed, window_counts(perturbed, starts, 1.0, BIN_SIZE))


def test_prompts_tell_the_schemes_apart(regions_session):
    sorting, tokens = regions_session
    model = _model_for(tokens)
    starts = np.array([5.0])
    counts = window_counts(tokens, starts, 1.0, BIN_SIZE)
    hidden = np.zeros(counts.shape, bool)
    hidden[:, :, :4] = True
    vocab = np.asarray(model.unit_emb.tokenizer(tokens.unit_ids))
    out = {}
    for scheme in ("neuron", "inter_region"):
        batch = masked_batch(model, tokens, vocab, starts, Mask(scheme, hidden, hidden), counts, BIN_SIZE)
        batch.pop("target"), batch.pop("target_mask")
        with torch.no_grad():
            out[scheme] = model(**batch)
    assert out["neuron"].shape == (1, 4 * 50)
    assert not torch.allclose(out["neuron"], out["inter_region"])
    assert len(model.encoding_head.prompt_emb.weight) == len(SCHEMES)


def test_masked_pretraining_improves_held_out_bits_per_spike():
    """On held-out time of a simulated session, the encoding head's bits per spike rise with
    masked pretraining: an untrained head predicts one rate for every unit and loses to the
    mean-rate null; training brings it close to the null or above (the benchmark measures how
    far above with a real budget)."""
    sorting, _ = sip.simulate_regions(duration=150, units_per_region=8, seed=1)
    train = sorting.frame_slice(0, int(120 * sorting.sampling_frequency))
    settings = dict(schemes="neuron", max_time_s=None, progress_bar=False, lr=3e-3, batch_size=16, seed=0)
    untrained = sip.pretrain([(train, None, "a")], "tiny", objective="masked", max_epochs=1, schedule="constant",
                             **{**settings, "lr": 1e-9})  # fmt: skip
    trained = sip.pretrain([(train, None, "a")], "tiny", objective="masked", max_epochs=6, **settings)
    before = encoding_bits_per_spike(untrained, sorting, "a", [[120, 150]])
    after = encoding_bits_per_spike(trained, sorting, "a", [[120, 150]])
    assert before["mean"] < -0.1
    assert after["mean"] > before["mean"] + 0.1 and after["mean"] > -0.05
    assert trained.meta["training"]["objective"] == "masked"
    assert trained.meta["behavior"] is None


def test_both_objectives_mix_labelled_and_unlabelled_sessions(tmp_path):
    s1, b1 = sip.simulate_session(duration=60, num_units=12, seed=1)
    s2, _ = sip.simulate_session(duration=60, num_units=9, seed=2)
    model = sip.pretrain([(s1, b1, "a"), (s2, None, "b")], "tiny", objective="both", **FAST)
    assert model.meta["training"]["labelled_sessions"] == ["a"]
    assert set(model.meta["fingerprints"]) == {"a", "b"}
    assert len(model.unit_emb) == 1 + 12 + 9
    decoded = sip.decode_behavior(s1, model, timestamps=b1.timestamps[:50], progress_bar=False)
    assert np.isfinite(decoded.values).all()
    # saved and loaded with its head (safetensors + JSON)
    loaded = sip.load_model(sip.save_model(model, tmp_path / "both"), device="cpu")
    assert loaded.encoding_head is not None
    for name, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value)


def test_bad_requests_are_explained():
    s1, b1 = sip.simulate_session(duration=60, num_units=12, seed=1)
    s2, _ = sip.simulate_session(duration=60, num_units=9, seed=2)
    b3 = sip.Behavior(b1.timestamps, np.c_[b1.values, b1.values[:, :1]], name="three")
    with pytest.raises(ValueError, match="same number of dimensions"):
        sip.pretrain([(s1, b1, "a"), (s2, b3, "b")], "tiny", objective="both", **FAST)
    with pytest.raises(ValueError, match="objective must be one of"):
        sip.pretrain([(s1, b1, "a")], "tiny", objective="spikes", **FAST)
    with pytest.raises(ValueError, match="brain_area"):
        sip.pretrain([(s1, None, "a")], "tiny", objective="masked", schemes="inter_region", **FAST)
    silent = si.NumpySorting.from_unit_dict({"0": np.array([], dtype=np.int64)}, sampling_frequency=30000.0)
    silent = si.NumpySorting.from_samples_and_labels(
        [np.array([], dtype=np.int64)], [np.array([], dtype=np.int64)], 30000.0
    ) if silent.get_num_units() == 0 else silent  # fmt: skip
    with pytest.raises(ValueError, match="no spike|no stretch"):
        spike_sessions(silent, "quiet", 1.0)
    no_head = sip.pretrain([(s1, b1, "a")], "tiny", **FAST)
    with pytest.raises(ValueError, match="encoding head"):
        sip.finetune(no_head, s2, b1.restrict([[0, 20]]), session_id="b", unlabelled="all", **FAST)
    masked = sip.pretrain([(s1, None, "a")], "tiny", objective="masked", **FAST)
    with pytest.raises(ValueError, match="pretrained without behaviour"):
        sip.decode_behavior(s1, masked, timestamps=b1.timestamps[:10], progress_bar=False)


@pytest.fixture(scope="module")
def masked_model():
    sorting, _ = sip.simulate_session(duration=60, num_units=12, seed=21)
    return sip.pretrain([(sorting, None, "pre")], "tiny", objective="masked", **FAST)


def _with_spikes_in(sorting, start: float, stop: float, seed: int):
    """The sorting with random extra spikes between ``start`` and ``stop`` seconds."""
    fs = sorting.sampling_frequency
    rng = np.random.default_rng(seed)
    units = {}
    for u in sorting.unit_ids:
        frames = sorting.get_unit_spike_train(u)
        extra = rng.integers(int(start * fs), int(stop * fs), 300)
        units[u] = np.sort(np.concatenate([frames, extra]))
    return si.NumpySorting.from_unit_dict(units, fs)


def test_semi_supervised_adaptation_never_uses_held_out_time(masked_model):
    sorting, behavior = sip.simulate_session(duration=90, num_units=10, seed=22)
    labelled = behavior.restrict([[0, 30]])
    held_out = [[60, 90]]
    settings = dict(session_id="new", unlabelled="all", held_out=held_out, seed=3, **FAST)
    a = sip.finetune(copy.deepcopy(masked_model), sorting, labelled, **settings)
    b = sip.finetune(copy.deepcopy(masked_model), _with_spikes_in(sorting, 60, 90, 5), labelled, **settings)

    def largest_change(other):
        return max(float((other.state_dict()[k] - v).abs().max()) for k, v in a.state_dict().items())

    # held-out spikes leave the adapted weights as they were, up to float rounding (a few 1e-6,
    # from summation orders); the control, extra spikes inside the unlabelled time, moves them
    c = sip.finetune(copy.deepcopy(masked_model), _with_spikes_in(sorting, 35, 55, 5), labelled, **settings)
    assert largest_change(b) < 1e-4 and largest_change(c) > 1e-2
    record = a.meta["training"]["finetuning"][-1]
    assert [s["stage"] for s in record["stages"]] == ["self_supervised", "unit_identification"]
    assert record["held_out"] == held_out and 0 < record["unlabelled_seconds"] <= 60
    # the readout was never trained, so unit identification trains it (and it decodes now)
    assert "readout" in record["stages"][1]["trained"] and a.meta["training"]["untrained"] == []
    decoded = sip.decode_behavior(sorting, a, timestamps=behavior.timestamps[-50:], session_id="new")
    assert np.isfinite(decoded.values).all()


def test_adaptation_refuses_labels_or_unlabelled_time_inside_the_held_out_part(masked_model):
    sorting, behavior = sip.simulate_session(duration=90, num_units=10, seed=22)
    with pytest.raises(ValueError, match="labelled behaviour has samples inside the held-out"):
        sip.finetune(copy.deepcopy(masked_model), sorting, behavior, session_id="n", held_out=[[60, 90]], **FAST)
    with pytest.raises(ValueError, match="overlap the held-out time"):
        sip.finetune(copy.deepcopy(masked_model), sorting, behavior.restrict([[0, 30]]), session_id="n",
                     unlabelled=[[0, 70]], held_out=[[60, 90]], **FAST)  # fmt: skip


def test_masked_objective_on_a_real_unlabelled_recording():
    """The IBL Neuropixels test recording has no behaviour: it trains the masked objective,
    and each validation pass scores finite masked NLL."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import spikeinterface.extractors as se

        sorting = se.read_nwb_sorting(str(shared_file("ibl_neuropixels_120s.nwb")))
    sessions = spike_sessions(sorting, "ibl", 1.0)
    assert sessions[0].train_seconds > 90
    model = _model_for(sessions[0].tokens)
    task = MaskedSpikesTask(model, sessions, TrainingConfig(batch_size=4), schemes="neuron")
    first, _ = task.validate()
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    model.train()
    for _ in range(20):
        optimiser.zero_grad()
        task.loss(model, rng, 0).backward()
        optimiser.step()
    last, _ = task.validate()
    assert np.isfinite(first) and last > first


def test_the_self_supervised_shipped_model_loads_and_was_trained_only_on_shippable_data():
    import json

    from spikeinterface_poyo.io.models import resolve_model_path

    assert {"poyo_small_sim_hc", "poyo_small_ssl"} <= set(sip.available_models())
    model = sip.load_model("poyo_small_ssl", device="cpu")
    assert model.encoding_head is not None and model.meta["training"]["objective"] == "both"
    recipe = json.loads((resolve_model_path("poyo_small_ssl") / "recipe.json").read_text())
    files = {s["file"] for s in recipe["corpus"]["sessions"] if "file" in s}
    # the data README: only these real recordings may ship weights
    assert files == {"linear_track.nwb", "w_maze.nwb", "ibl_neuropixels_120s.nwb"}
    assert "ibl_neuropixels" not in model.meta["training"]["labelled_sessions"]
    assert sip.load_model("poyo_small_sim_hc", device="cpu").encoding_head is None  # the old model still loads
