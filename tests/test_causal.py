"""Causal POYO offline: the context stored with the model (only when causal), queries at the end
of each training window, one window ending at each decoded time, nothing after it used, and no
prediction without a full window of history."""

import json

import numpy as np
import pytest
import torch

import spikeinterface_poyo as sip
from spikeinterface_poyo.cli import main
from spikeinterface_poyo.core.sessions import session_data
from spikeinterface_poyo.core.spikes import SpikeTokens, sorting_to_tokens
from spikeinterface_poyo.io.nwb_write import write_session_nwb
from spikeinterface_poyo.models.poyo import POYO
from spikeinterface_poyo.models.poyo.task import make_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def untrained(sorting, context="causal", session="s", seed=0) -> POYO:
    """A seeded `tiny` POYO (untrained: its outputs still depend on every spike it sees)."""
    torch.manual_seed(seed)
    model = POYO.from_preset("tiny", dim_out=2, context=context).eval()
    model.unit_emb.extend_vocab([f"{session}/{u}" for u in sorting.unit_ids])
    model.session_emb.extend_vocab([session])
    return model


@pytest.fixture(scope="module")
def short_session():
    return sip.simulate_session(duration=12.0, num_units=8, seed=3)


def with_spikes_changed_after(tokens: SpikeTokens, t_cut: float, seed: int = 0) -> SpikeTokens:
    """The same segment with every spike after ``t_cut`` replaced by other, random ones."""
    rng = np.random.default_rng(seed)
    keep = tokens.times <= t_cut
    extra = np.sort(rng.uniform(t_cut + 1e-6, tokens.end_time, 300))
    times = np.concatenate([tokens.times[keep], extra])
    units = np.concatenate([tokens.unit_index[keep], rng.integers(tokens.num_units, size=len(extra))])
    return SpikeTokens(times, units, tokens.unit_ids, tokens.session_id, tokens.start_time, tokens.end_time)


def test_causal_predictions_never_use_spikes_after_their_time(short_session):
    sorting, _ = short_session
    tokens = sorting_to_tokens(sorting, "s")[0]
    grid = np.arange(0.5, 11.5, 0.01)
    t_cut = 6.003
    changed = with_spikes_changed_after(tokens, t_cut)
    before, after = grid <= t_cut, grid > t_cut + 0.05
    causal = untrained(sorting)
    a = causal.predict_segment(tokens, grid, "s")  # the model's own context: causal
    b = causal.predict_segment(changed, grid, "s")
    # the same to float rounding (batches of other padding sum in another order)
    np.testing.assert_allclose(a[before], b[before], atol=1e-7, rtol=0)
    assert np.all(np.abs(a[after] - b[after]).max(axis=1) > 1e-4)  # what comes after t does change
    # centred windows do read the future: the same change moves predictions before t_cut
    centred = untrained(sorting, context="centred")
    c = centred.predict_segment(tokens, grid, "s")
    d = centred.predict_segment(changed, grid, "s")
    assert np.abs(c[before] - d[before]).max() > 1e-3


def test_causal_decoding_needs_a_full_window_of_history(short_session):
    sorting, _ = short_session
    model = untrained(sorting)
    tokens = sorting_to_tokens(sorting, "s")[0]
    grid = np.arange(0.0, tokens.end_time + 0.5, 0.05)
    values = model.predict_segment(tokens, grid, "s")
    ready = (grid >= tokens.start_time + model.window_length - 1e-9) & (grid <= tokens.end_time)
    assert ready.any() and not ready.all()
    assert np.all(np.isfinite(values[ready])) and np.all(np.isnan(values[~ready]))
    # one window ending at t: the prediction at t is that of a segment cut at t
    t = grid[ready][7]
    cut = SpikeTokens(tokens.times[tokens.times < t], tokens.unit_index[tokens.times < t], tokens.unit_ids, "s",
                      t - 1.0, t)  # fmt: skip
    np.testing.assert_allclose(model.predict_segment(cut, np.array([t]), "s")[0], values[ready][7], atol=1e-6)


def test_context_is_stored_only_when_causal_and_older_folders_read_as_centred(short_session, tmp_path):
    sorting, _ = short_session
    centred, causal = untrained(sorting, "centred"), untrained(sorting, "causal")
    assert "context" not in centred.config and centred.context == "centred"
    assert causal.config["context"] == "causal"
    causal.meta = {"training": {"sessions": ["s"]}}
    loaded = sip.load_model(sip.save_model(causal, tmp_path / "causal"))
    assert loaded.context == "causal" and loaded.config == causal.config
    # a folder written before contexts existed has no key: it loads as the centred model it is
    folder = sip.save_model(centred, tmp_path / "centred")
    assert "context" not in json.loads((folder / "config.json").read_text())["config"]["architecture"]
    assert sip.load_model(folder).context == "centred"
    assert sip.load_model("poyo_small_sim_hc").context == "centred"
    with pytest.raises(ValueError, match="spells it 'centred'"):
        POYO.from_preset("tiny", dim_out=2, context="centered")
    with pytest.raises(ValueError, match="context must be one of"):
        sip.train_decoder(sorting, short_session[1], "tiny", context="acausal")


def test_causal_training_weighs_the_end_of_each_window_most(short_session):
    sorting, behavior = short_session
    data = session_data(sorting, behavior, "s", 1.0, 0.1)[0]
    starts = np.linspace(0.0, 9.0, 10)
    vocab = np.arange(1, sorting.get_num_units() + 1)
    batches = {c: make_batch(untrained(sorting, c), data, vocab, starts, None) for c in ("centred", "causal")}
    centred, causal = (batches[c]["target_mask"].numpy() for c in ("centred", "causal"))
    np.testing.assert_array_equal(batches["centred"]["output_timestamps"], batches["causal"]["output_timestamps"])
    assert centred.dtype == bool and centred.sum() > 400
    relative = batches["causal"]["output_timestamps"].numpy()
    edge = centred & (relative >= 1.0 - 0.125)  # the last latent step, where causal decoding reads
    np.testing.assert_array_equal(causal[edge], 8.0)
    np.testing.assert_array_equal(causal[centred & ~edge], 1.0)
    np.testing.assert_array_equal(causal[~centred], 0.0)
    assert 0.45 < causal[edge].sum() / causal.sum() < 0.6  # about half the loss sits at the edge


def test_a_causal_decoder_trains_decodes_causally_and_can_be_read_centred_on_purpose(short_session):
    sorting, behavior = short_session
    model = sip.train_decoder(sorting, behavior, "tiny", context="causal", max_epochs=1, max_time_s=None,
                              progress_bar=False)  # fmt: skip
    assert model.context == "causal" and model.meta["training"]["context"] == "causal"
    t = behavior.timestamps
    own = sip.decode_behavior(sorting, model, timestamps=t, progress_bar=False)
    assert np.isnan(own.values[t < 1.0 - 1e-9]).all() and np.isfinite(own.values[t >= 1.0]).all()
    centred = sip.decode_behavior(sorting, model, timestamps=t, progress_bar=False, context="centred")
    assert np.isfinite(centred.values).all()  # explicitly asked for: centred windows reach the first second
    config = sip.TrainingConfig(max_epochs=1, max_time_s=None, progress_bar=False)
    estimator = sip.POYODecoder(preset="tiny", context="causal", config=config).fit(sorting, behavior)
    assert estimator.model_.context == "causal" and estimator.get_params()["context"] == "causal"


def test_a_family_with_fixed_windows_refuses_a_context(short_session):
    sorting, behavior = short_session
    ridge = sip.WienerFilter().fit(sorting, behavior)
    with pytest.raises(ValueError, match="fixed window placement"):
        sip.decode_behavior(sorting, ridge, timestamps=behavior.timestamps, context="causal", progress_bar=False)
    with pytest.raises(ValueError, match="context must be one of"):
        sip.decode_behavior(sorting, ridge, timestamps=behavior.timestamps, context="left", progress_bar=False)


def test_the_command_line_trains_a_causal_model_and_says_so(tmp_path, capsys):
    sorting, behavior = sip.simulate_session(duration=30.0, num_units=8, seed=3)
    path = write_session_nwb(tmp_path / "session.nwb", sorting, behavior, "simulated")
    out = tmp_path / "causal"
    argv = ["train", str(path), "--behavior", "velocity", "--output", str(out), "--preset", "tiny", "--context"]
    assert main([*argv, "causal", "--max-epochs", "1", "--max-time-s", "5"]) == 0
    assert "(causal context)" in capsys.readouterr().out
    assert sip.load_model(out).context == "causal"
    assert main(["evaluate", str(path), "--model", str(out), "--behavior", "velocity"]) == 0
    assert "causal context" in capsys.readouterr().out
    wiener = ["train", str(path), "--behavior", "velocity", "--output", str(tmp_path / "w"), "--family", "wiener"]
    assert main([*wiener, "--context", "causal"]) == 2
    assert "--context applies to POYO" in capsys.readouterr().err
