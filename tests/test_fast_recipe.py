"""``train_decoder(recipe="fast")``: a warm start from the shipped model with a 0.5 s window, causal
when asked, saved and read back like any model, and refused where it cannot apply."""

import numpy as np
import pytest

import spikeinterface_poyo as sip
from spikeinterface_poyo.core.spikes import SpikeTokens, sorting_to_tokens
from spikeinterface_poyo.models.poyo.training import FAST_RECIPE

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def session():
    return sip.simulate_session(duration=40.0, num_units=12, seed=4)


@pytest.fixture(scope="module")
def fast_model(session):
    sorting, behavior = session
    return sip.train_decoder(sorting, behavior, context="causal", recipe="fast", max_epochs=1, max_time_s=None,
                             progress_bar=False)  # fmt: skip


def test_the_fast_recipe_warm_starts_a_causal_half_second_decoder(session, fast_model, tmp_path):
    sorting, behavior = session
    model = fast_model
    assert model.context == "causal" and model.window_length == FAST_RECIPE["sequence_length"] == 0.5
    training = model.meta["training"]
    assert training["recipe"] == {"name": "fast", **FAST_RECIPE} and training["context"] == "causal"
    assert training["finetuning"][-1]["mode"] == "full" and training["finetuning"][-1]["session"] == "session"
    stage = training["finetuning"][-1]["stages"][-1]  # the top level is this session's training, not the shipped one's
    assert training["steps"] == stage["steps"] and training["hyperparameters"]["lr"] == FAST_RECIPE["lr"]
    assert training["warm_start_from"]["steps"] != stage["steps"]
    assert len(model.unit_emb) - 1 > sorting.get_num_units()  # the shipped model's units are kept beside the new
    t = behavior.timestamps
    decoded = sip.decode_behavior(sorting, model, timestamps=t, progress_bar=False)  # the session is recognised
    assert np.isnan(decoded.values[t < 0.5 - 1e-9]).all() and np.isfinite(decoded.values[t >= 0.5]).all()
    again = sip.load_model(sip.save_model(model, tmp_path / "fast"), device="cpu")
    assert again.context == "causal" and again.window_length == 0.5
    reread = sip.decode_behavior(sorting, again, timestamps=t[t >= 0.5], progress_bar=False)
    np.testing.assert_allclose(reread.values, decoded.values[t >= 0.5], atol=1e-5)


def test_a_fast_causal_prediction_ignores_every_spike_after_its_time(session, fast_model):
    sorting, _ = session
    tokens = sorting_to_tokens(sorting, "session")[0]
    grid = np.arange(1.0, 20.0, 0.02)
    t_cut = 12.007
    keep = tokens.times <= t_cut
    past_only = SpikeTokens(tokens.times[keep], tokens.unit_index[keep], tokens.unit_ids, "session",
                            tokens.start_time, tokens.end_time)  # fmt: skip
    full = fast_model.predict_segment(tokens, grid, "session")
    cut = fast_model.predict_segment(past_only, grid, "session")
    before = grid <= t_cut
    np.testing.assert_allclose(full[before], cut[before], atol=1e-6, rtol=0)
    assert np.abs(full[~before] - cut[~before]).max() > 1e-4  # the spikes removed after t_cut did matter


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(recipe="quick"), "recipe must be one of"),
        (dict(recipe="fast", preset="tiny"), "shipped 'small' model"),
        (dict(recipe="fast", dim=32), r"\['dim'\]"),
        (dict(recipe="fast", sequence_length=0.0), "must be positive"),
    ],
)
def test_the_fast_recipe_refuses_what_it_cannot_apply(session, kwargs, message):
    sorting, behavior = session
    with pytest.raises(ValueError, match=message):
        sip.train_decoder(sorting, behavior, max_epochs=1, progress_bar=False, **kwargs)
