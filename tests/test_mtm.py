"""MtM: binning, masking semantics, the model's causality and stitchers, training, finetuning,
evaluation, rates, and the ecosystem around them (analyzer extension, NWB, command line)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from conftest import shared_file

import spikeinterface_poyo as sip
from spikeinterface_poyo.io.nwb_write import write_session_nwb
from spikeinterface_poyo.models.masking import SCHEMES, session_schemes
from spikeinterface_poyo.models.mtm import (
    MtM,
    bin_session,
    decode_from_rates,
    decode_labels_from_rates,
    draw_mask,
    evaluate_mtm,
    finetune_mtm,
    infer_rates,
    pretrain_mtm,
    session_regions,
    smoothing_cosmoothing,
)
from spikeinterface_poyo.models.mtm.task import masked_input, masked_poisson_nll

TINY = dict(dim=32, depth=1, heads=2, dropout=0.0)
QUICK = dict(max_epochs=2, windows_per_epoch=64, batch_size=8, max_time_s=None, progress_bar=False)


@pytest.fixture(scope="module")
def regions_session():
    sorting, truth = sip.simulate_regions(duration=240, units_per_region=12, seed=3)
    return sorting, truth, bin_session(sorting, "sim")


@pytest.fixture(scope="module")
def trained(regions_session):
    sorting, _, session = regions_session
    return pretrain_mtm(session, schemes="mtm", **TINY, **dict(QUICK, max_epochs=6, windows_per_epoch=128))


def read_shared(name):
    import spikeinterface.extractors as se

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return se.read_nwb_sorting(str(shared_file(name)))


# ---- binning ------------------------------------------------------------------------------------


def test_binning_keeps_every_spike_in_contiguous_ordered_blocks(regions_session):
    sorting, _, session = regions_session
    assert [len(session.segments[s]) for s in ("train", "val", "test")] == [1, 1, 1]
    starts = [session.segment_starts[s][0] for s in ("train", "val", "test")]
    end = sorting.to_spike_vector()["sample_index"].max() / sorting.sampling_frequency  # no recording: the last spike
    assert starts[0] == 0 and starts[0] < starts[1] < starts[2] == pytest.approx(0.7 * end, abs=1e-6)
    total = sum(seg.sum() for split in session.segments.values() for seg in split)
    spikes = len(sorting.to_spike_vector())
    assert spikes - 3 * session.num_units <= total <= spikes  # at most a partial bin lost per block and unit
    windows, t0 = session.windows("test")
    assert windows.shape[1:] == (100, 36) and np.allclose(np.diff(t0), 2.0)
    assert np.array_equal(windows.reshape(-1, 36), session.segments["test"][0][: windows.shape[0] * 100])


def test_trial_windows_on_real_data_give_back_the_stored_counts():
    import pynwb

    path = shared_file("chewie_20131003_center_out.nwb")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pynwb.NWBHDF5IO(str(path), "r") as io:
            nwb = io.read()
            trials = nwb.trials.to_dataframe()
            stored = nwb.processing["ecephys"]["binned_spike_counts"]
            counts, starts = np.asarray(stored.data[:]), np.asarray(stored.timestamps[:])
    session = bin_session(read_shared(path.name), "chewie", 0.05, 7, events=trials, event_offset=0.0)
    windows = np.concatenate([np.stack(session.segments[s]) for s in ("train", "val", "test")])
    window_starts = np.concatenate([session.segment_starts[s] for s in ("train", "val", "test")])
    assert len(windows) == len(trials)
    checked = 0
    for window, t0 in zip(windows, window_starts):
        rows = np.searchsorted(starts, t0 + 0.05 * np.arange(7) - 1e-6)
        present = np.abs(starts[np.minimum(rows, len(starts) - 1)] - (t0 + 0.05 * np.arange(7))) < 1e-6
        assert np.array_equal(window[present], counts[rows[present]])
        checked += present.sum()
    assert checked > 900


def test_bad_binning_is_refused_with_the_fix(regions_session):
    sorting = regions_session[0]
    with pytest.raises(ValueError, match="num_bins must be an integer of at least 2"):
        bin_session(sorting, bin_size=0.5, num_bins=1)
    with pytest.raises(ValueError, match="longer than the session"):
        bin_session(sorting, bin_size=1.0, num_bins=300)
    with pytest.raises(ValueError, match="inside the spikes' span"):
        bin_session(sorting, events=[1e4, 2e4, 3e4])
    with pytest.raises(ValueError, match="no column 'go'"):
        import pandas as pd

        bin_session(sorting, events=pd.DataFrame({"start_time": [1.0, 2.0, 3.0]}), event_column="go")


def test_silent_units_are_kept_and_counted(regions_session):
    from spikeinterface.core import NumpySorting

    sorting = regions_session[0]
    spikes = sorting.to_spike_vector()
    keep = spikes["unit_index"] != 0  # unit 0 never fires
    silent = NumpySorting.from_samples_and_labels(
        [spikes["sample_index"][keep]],
        [spikes["unit_index"][keep]],
        sorting.sampling_frequency,
        unit_ids=sorting.unit_ids,
    )
    session = bin_session(silent, "silent")
    assert session.num_units == sorting.get_num_units()
    assert sum(seg[:, 0].sum() for split in session.segments.values() for seg in split) == 0


# ---- masking ------------------------------------------------------------------------------------


def test_each_scheme_hides_and_scores_the_entries_it_names(regions_session):
    session = regions_session[2]
    regions = session_regions(session.brain_area)
    assert sorted(regions) == ["driven", "independent", "source"]
    rng = np.random.default_rng(0)
    shape = (4, 100, 36)
    for scheme in ("temporal", "causal"):
        mask = draw_mask(scheme, shape, regions, rng)
        assert np.array_equal(mask.hidden, mask.scored)
        assert (mask.hidden.all(axis=2) == mask.hidden.any(axis=2)).all()  # whole bins
        assert (mask.hidden[:, :, 0].sum(axis=1) == 30).all()
    mask = draw_mask("neuron", shape, regions, rng)
    assert (mask.hidden.all(axis=1) == mask.hidden.any(axis=1)).all() and (mask.hidden[:, 0].sum(axis=1) == 11).all()
    for units in draw_mask("inter_region", shape, regions, rng, region="driven").hidden[:, 0]:
        assert np.array_equal(np.flatnonzero(units), regions["driven"])
    mask = draw_mask("intra_region", shape, regions, rng, region="source")
    outside = np.setdiff1d(np.arange(36), regions["source"])
    assert mask.hidden[:, :, outside].all() and not mask.scored[:, :, outside].any()
    scored = mask.scored[:, 0]
    assert (scored.sum(axis=1) == 4).all() and np.isin(np.flatnonzero(scored[0]), regions["source"]).all()
    assert (mask.scored <= mask.hidden).all()
    assert mask.causal is False and draw_mask("causal", shape, regions, rng).causal is True


def test_entries_that_are_not_scored_do_not_move_the_loss(regions_session):
    session = regions_session[2]
    regions = session_regions(session.brain_area)
    model = MtM(**TINY, schemes=SCHEMES)
    model.add_session("sim", session.unit_ids, session.brain_area)
    model.eval()
    counts = session.sample("train", 4, np.random.default_rng(1))
    mask = draw_mask("intra_region", counts.shape, regions, np.random.default_rng(2))

    def loss(c):
        out = model(masked_input(c, mask.hidden, "cpu"), 0, "intra_region")
        return masked_poisson_nll(out, torch.from_numpy(c), torch.from_numpy(mask.scored)).item()

    changed = counts.copy()
    changed[mask.hidden & ~mask.scored] += 3  # hidden but unscored: neither seen nor scored
    assert loss(changed) == loss(counts)
    changed = counts.copy()
    changed[mask.scored] += 3  # a scored target does move it
    assert loss(changed) != loss(counts)
    log_rates = torch.randn(counts.shape)
    target = torch.from_numpy(counts.copy())
    before = masked_poisson_nll(log_rates, target, torch.from_numpy(mask.scored)).item()
    target[torch.from_numpy(~mask.scored)] = 9.0
    assert masked_poisson_nll(log_rates, target, torch.from_numpy(mask.scored)).item() == before


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_causal_outputs_do_not_see_later_bins(regions_session, position):
    session = regions_session[2]
    model = MtM(**TINY, position=position, schemes=SCHEMES).eval()
    model.add_session("sim", session.unit_ids, session.brain_area)
    counts = torch.from_numpy(session.sample("train", 2, np.random.default_rng(0)))
    later = counts.clone()
    later[:, 60:] = torch.poisson(torch.full_like(later[:, 60:], 2.0))
    with torch.no_grad():
        assert torch.equal(model(counts, 0, "causal")[:, :60], model(later, 0, "causal")[:, :60])
        assert not torch.equal(model(counts, 0, "causal")[:, 60:], model(later, 0, "causal")[:, 60:])
        # bidirectional schemes do look ahead: the check above could fail
        assert not torch.allclose(model(counts, 0, "neuron")[:, :60], model(later, 0, "neuron")[:, :60])


def test_region_rules_and_fallbacks(caplog):
    human = bin_session(read_shared("human_mtl_two_regions.nwb"), "human", num_bins=50, bin_size=0.05)
    regions = session_regions(human.brain_area)
    assert {k: len(v) for k, v in regions.items()} == {"amygdala_right": 10, "hippocampus_right": 25}
    assert session_schemes(("neuron", "inter_region"), regions, "human") == ("neuron", "inter_region")
    labels = np.array(["CA1"] * 6 + ["root"] * 6 + ["void"] * 3 + ["DG"] * 2)
    assert list(session_regions(labels)) == ["CA1"]  # root, void and small regions are not regions
    with caplog.at_level(logging.WARNING):
        assert session_schemes(("neuron", "causal", "inter_region"), {"CA1": np.arange(6)}, "one") == (
            "neuron",
            "causal",
        )
    assert "fewer than two regions" in caplog.text
    with pytest.raises(ValueError, match="brain_area"):
        session_schemes(("inter_region",), {}, "no_labels")
    with pytest.raises(ValueError, match="two regions"):
        draw_mask("inter_region", (1, 10, 6), {"CA1": np.arange(6)}, np.random.default_rng(0))


# ---- the model, training, finetuning --------------------------------------------------------------


def test_sessions_with_as_many_units_get_their_own_stitchers(tmp_path):
    a, _ = sip.simulate_regions(duration=60, units_per_region=6, seed=1)
    b, _ = sip.simulate_regions(duration=60, units_per_region=6, seed=2)
    model = pretrain_mtm({"a": a, "b": b}, num_bins=50, **dict(TINY, depth=2), **QUICK)  # rotary, two blocks
    assert [s["session_id"] for s in model.sessions] == ["a", "b"] and len(model.stitch_in) == 2
    assert not torch.equal(model.stitch_in[0].weight, model.stitch_in[1].weight)
    assert model.resolve_session(b) == "b" and model.resolve_session(a) == "a"
    sip.save_model(model, tmp_path / "mtm")
    loaded = sip.load_model(tmp_path / "mtm")
    assert isinstance(loaded, MtM) and loaded.session_units() == model.session_units()
    x = torch.poisson(torch.full((2, 50, 18), 0.3))
    with torch.no_grad():
        assert torch.equal(loaded(x, 1, "neuron"), model.eval()(x, 1, "neuron"))
    c, _ = sip.simulate_regions(duration=60, units_per_region=6, seed=9)
    with pytest.raises(sip.UnknownSessionError, match="not one the model was trained on"):
        infer_rates(c, loaded, progress_bar=False)
    with pytest.raises(KeyError, match="no stitcher for session 'c'"):
        loaded.session_index("c")
    with pytest.raises(TypeError, match="predicts activity, not behaviour"):
        sip.decode_behavior(a, loaded)


def test_output_stitchers_start_at_each_units_mean_rate(regions_session):
    """A rarely firing unit must not start near one spike per bin: its bits per spike would pay
    for the whole of a short training run."""
    session = bin_session(regions_session[0], "sim")
    mean = session.mean_counts("train")
    model = MtM(**TINY, num_bins=100)
    model.add_session("sim", session.unit_ids, mean_counts=mean)
    floor = 1.0 / (10 * model.num_bins)
    torch.testing.assert_close(model.stitch_out[0].bias, torch.log(torch.as_tensor(mean, dtype=torch.float32) + floor))
    trained_from_sorting = pretrain_mtm(session, **TINY, max_epochs=1, windows_per_epoch=16, max_time_s=None,
                                        progress_bar=False)  # fmt: skip
    start = torch.log(torch.as_tensor(mean, dtype=torch.float32) + floor)
    assert torch.allclose(trained_from_sorting.stitch_out[0].bias, start, atol=0.1)  # one short epoch moves it little


def test_finetuning_adds_a_session_and_leaves_the_pretrained_model_alone(trained):
    new, _ = sip.simulate_regions(duration=120, units_per_region=8, seed=7)
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    frozen = finetune_mtm(trained, new, session_ids="new", freeze_backbone=True, **QUICK)
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in before.items())
    state = frozen.state_dict()
    assert all(torch.equal(state[k], v) for k, v in before.items())  # backbone and old stitchers untouched
    assert frozen.session_index("new") == 1 and frozen.meta["training"]["freeze_backbone"] is True
    assert frozen.meta["training"]["pretraining"]["sessions"] == ["sim"]
    tuned = finetune_mtm(trained, new, session_ids="new", **QUICK)
    assert not torch.equal(tuned.embed.weight, trained.embed.weight)
    assert torch.equal(tuned.stitch_in[0].weight, trained.stitch_in[0].weight)
    with pytest.raises(ValueError, match="binned at"):
        finetune_mtm(trained, bin_session(new, "other", bin_size=0.05))


def test_training_resumes_from_its_checkpoint(tmp_path, regions_session):
    session = regions_session[2]
    import shutil

    settings = dict(TINY, **QUICK, checkpoint_dir=tmp_path / "ckpt")
    full = pretrain_mtm(session, **settings)
    newest = sorted((tmp_path / "ckpt").glob("step-*"))
    assert [p.name for p in newest] == ["step-00000008", "step-00000016"]
    shutil.rmtree(newest[-1])  # as if killed during the second epoch
    with pytest.raises(Exception, match="other training settings"):
        pretrain_mtm(session, **dict(settings, resume=True, lr=1e-2))
    resumed = pretrain_mtm(session, **dict(settings, resume=True))
    assert resumed.meta["training"]["resumed_from"] == "step-00000008"
    assert all(torch.equal(v, full.state_dict()[k]) for k, v in resumed.state_dict().items())


def test_a_trained_model_reads_the_regions_the_simulation_couples():
    """The region task on ground truth: the driven region is predicted from the others (its
    source among them) and the independent one is not."""
    sorting, _ = sip.simulate_regions(duration=300, units_per_region=20, coupling=0.95, gain=1.0, seed=11)
    session = bin_session(sorting, "sim", num_bins=50)
    settings = dict(max_epochs=10, windows_per_epoch=480, batch_size=16, max_time_s=None, progress_bar=False)
    model = pretrain_mtm(session, schemes=("inter_region",), **TINY, **settings)
    scores = evaluate_mtm(model, session, tasks=("co_smoothing", "inter_region"))
    inter = scores["inter_region"]
    assert inter["driven"]["mean"] > 0.1 and inter["driven"]["mean"] > inter["independent"]["mean"] + 0.1
    assert inter["independent"]["mean"] < 0.05
    assert scores["prompts"] == {"co_smoothing": "inter_region", "inter_region": "inter_region"}


def test_evaluation_reports_every_task_and_the_smoothing_baseline_learns(trained, regions_session):
    session = regions_session[2]
    scores = evaluate_mtm(trained, session)
    assert set(scores) == {"co_smoothing", "forward_prediction", "inter_region", "intra_region", "prompts", "windows"}
    assert set(scores["inter_region"]) == {"driven", "independent", "source", "all"}
    assert len(scores["co_smoothing"]["per_neuron"]) == 36 and scores["windows"] == session.num_windows("test")
    assert all(np.isfinite(scores[t]["mean"]) for t in ("co_smoothing", "forward_prediction"))
    baseline = smoothing_cosmoothing(session)
    assert baseline["mean"] > 0.05 and baseline["sigma_bins"] in (1.0, 2.5, 5.0)


# ---- rates and readouts -------------------------------------------------------------------------


def test_rates_cover_every_bin_of_every_unit(trained, regions_session):
    sorting = regions_session[0]
    rates = infer_rates(sorting, trained, progress_bar=False)
    end = sorting.to_spike_vector()["sample_index"].max() / sorting.sampling_frequency
    assert rates.values.shape == (int(end / 0.02), 36) and rates.unit == "Hz"
    assert np.allclose(np.diff(rates.timestamps), 0.02) and rates.timestamps[0] == pytest.approx(0.01)
    assert rates.dimension_names == [str(u) for u in sorting.unit_ids]
    assert np.all(np.isfinite(rates.values)) and np.all(rates.values > 0)
    observed = np.bincount(sorting.to_spike_vector()["unit_index"], minlength=36) / end
    assert np.corrcoef(rates.values.mean(axis=0), observed)[0, 1] > 0.9  # each unit's own baseline
    assert 0.67 < rates.values.mean() / observed.mean() < 1.5
    subset = sorting.select_units(sorting.unit_ids[:5])
    with pytest.raises(ValueError, match="not in this sorting"):
        infer_rates(subset, trained, session_id="sim", progress_bar=False)


def test_readouts_recover_known_linear_and_categorical_structure():
    rng = np.random.default_rng(0)
    t = (np.arange(5000) + 0.5) * 0.02
    rates = np.exp(rng.normal(size=(5000, 8)))
    series = sip.Behavior(t, rates, name="rates", unit="Hz")
    # a behaviour that is a linear function of the square-root rates of the previous bin
    target = np.sqrt(rates[:-1]) @ rng.normal(size=(8, 2))
    behavior = sip.Behavior(t[1:] + 0.01, target)
    assert decode_from_rates(series, behavior, lags=3)["mean"] > 0.99
    noise = sip.Behavior(t, rng.normal(size=(5000, 2)))
    assert decode_from_rates(series, noise, lags=3)["mean"] < 0.02
    starts = np.arange(100) * 1.0
    labels = np.repeat([0, 1, 2, 3], 25)
    rng.shuffle(labels)
    values = np.ones((5000, 8))
    for a, label in zip(starts, labels):
        values[(t >= a) & (t < a + 1), label] = 9.0
    result = decode_labels_from_rates(sip.Behavior(t, values), starts, starts + 1, labels)
    assert result["accuracy"] == 1.0 and result["chance"] == 0.25


# ---- ecosystem ----------------------------------------------------------------------------------


def test_analyzer_extension_and_nwb_write_back(tmp_path, trained, regions_session):
    import pynwb
    import spikeinterface.full as si

    sorting = regions_session[0]
    path = sip.save_model(trained, tmp_path / "mtm")
    from spikeinterface.core import generate_recording

    recording = generate_recording(num_channels=4, durations=[240.0], sampling_frequency=sorting.sampling_frequency)
    analyzer = si.create_sorting_analyzer(
        sorting, recording, sparse=False, format="binary_folder", folder=tmp_path / "an"
    )
    analyzer.compute("mtm_rates", model=path)
    rates = analyzer.get_extension("mtm_rates").get_data()
    assert np.allclose(rates.values, infer_rates(sorting, trained, progress_bar=False).values, atol=1e-3)
    reloaded = si.load_sorting_analyzer(tmp_path / "an")
    assert np.array_equal(reloaded.get_extension("mtm_rates").get_data().values, rates.values)
    picked = analyzer.select_units(sorting.unit_ids[3:6])
    assert np.array_equal(picked.get_extension("mtm_rates").get_data().values, rates.values[:, 3:6])

    nwb = write_session_nwb(
        tmp_path / "s.nwb", sorting, sip.Behavior(rates.timestamps[::5], np.zeros((2400, 1))), "simulated regions"
    )
    sip.write_rates_to_nwb(nwb, rates, model=trained, model_path=path, bin_size=trained.bin_size, masking="neuron")
    back, meta = sip.read_rates_from_nwb(nwb, return_metadata=True)
    assert np.allclose(back.values, rates.values) and back.dimension_names == rates.dimension_names
    assert meta["model_name"] == "MtM" and meta["training_sessions"] == ["sim"]
    with pynwb.NWBHDF5IO(str(nwb), "r") as io:
        assert io.read().processing["ecephys"]["inferred_rates"].neurodata_type == "InferredRates"


def test_command_line_pretrains_evaluates_and_writes_rates(tmp_path, regions_session):
    from spikeinterface_poyo.cli import main

    sorting = regions_session[0]
    nwb = write_session_nwb(
        tmp_path / "s.nwb", sorting, sip.Behavior(np.arange(0, 240, 0.1), np.zeros((2400, 1))), "simulated regions"
    )
    config = {
        "family": "mtm",
        "output": "model",
        "model": {**TINY, "num_bins": 50},
        "training": {k: v for k, v in QUICK.items() if k != "progress_bar"},
        "sessions": [{"path": str(nwb), "session_id": "rec"}, {"simulated_regions": {"duration": 60, "seed": 4}}],
    }
    (tmp_path / "run.json").write_text(json.dumps(config))
    assert main(["pretrain", "--config", str(tmp_path / "run.json")]) == 0
    model = sip.load_model(tmp_path / "model")
    assert [s["session_id"] for s in model.sessions] == ["rec", "simulated_1"]
    out = subprocess.run(
        [sys.executable, "-m", "spikeinterface_poyo", "evaluate", str(nwb), "--model", str(tmp_path / "model")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "co_smoothing:" in out.stdout and "inter_region: driven" in out.stdout
    assert main(["rates", str(nwb), "--model", str(tmp_path / "model")]) == 0
    assert sip.read_rates_from_nwb(nwb).values.shape[1] == 36
    assert main(["rates", str(nwb), "--model", str(tmp_path / "model"), "--session-id", "nope"]) == 2
