import numpy as np
import pytest
import torch

import spikeinterface_poyo as sip

FAST = dict(max_epochs=2, max_time_s=None, progress_bar=False)


@pytest.fixture(scope="module")
def pretrained():
    sessions = [(*sip.simulate_session(duration=60.0, num_units=20, seed=s), f"sim{s}") for s in (10, 11)]
    return sip.pretrain(sessions, preset="tiny", **FAST)


@pytest.fixture(scope="module")
def new_session():
    return sip.simulate_session(duration=60.0, num_units=15, seed=12)


def test_pretraining_keeps_sessions_apart(pretrained):
    assert pretrained.session_emb.vocab == ["NA", "sim10", "sim11"]
    assert len(pretrained.unit_emb) == 1 + 20 + 20
    assert set(pretrained.meta["normalization"]) == {"sim10", "sim11"}
    assert pretrained.meta["training"]["mode"] == "pretraining"


def test_unit_identification_trains_only_the_new_embeddings(pretrained, new_session):
    model = sip.load_model(_saved(pretrained), device="cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sorting, behavior = new_session
    sip.finetune(model, sorting, behavior, session_id="new", **FAST)
    after = model.state_dict()
    old_units, old_sessions = before["unit_emb.weight"].shape[0], before["session_emb.weight"].shape[0]
    for name, value in before.items():
        if name in ("unit_emb.weight", "session_emb.weight"):
            torch.testing.assert_close(after[name][: value.shape[0]], value, msg=name)
        else:
            torch.testing.assert_close(after[name], value, msg=name)
    assert after["unit_emb.weight"].shape[0] == old_units + 15
    assert not torch.allclose(after["unit_emb.weight"][old_units:], torch.zeros(15, after["unit_emb.weight"].shape[1]))
    assert after["session_emb.weight"].shape[0] == old_sessions + 1
    record = model.meta["training"]["finetuning"][-1]
    assert record["mode"] == "unit_identification" and record["num_new_units"] == 15
    assert "new" in model.meta["normalization"]
    t = behavior.timestamps[:100]
    decoded = sip.decode_behavior(sorting, model, timestamps=t, session_id="new", progress_bar=False)
    assert np.isfinite(decoded.values).all()
    # unit ids 0..14 exist in every session; the sorting is recognised as "new" by its spikes
    recognised = sip.decode_behavior(sorting, model, timestamps=t, progress_bar=False)
    np.testing.assert_allclose(recognised.values, decoded.values)


def test_full_finetuning_moves_shared_weights(pretrained, new_session):
    model = sip.load_model(_saved(pretrained), device="cpu")
    readout = model.readout.weight.detach().clone()
    sorting, behavior = new_session
    sip.finetune(model, sorting, behavior, mode="full", session_id="new", warmup_epochs=1, **FAST)
    assert not torch.allclose(model.readout.weight, readout)
    stages = [s["stage"] for s in model.meta["training"]["finetuning"][-1]["stages"]]
    assert stages == ["unit_identification", "full"]


def test_bad_adaptation_requests_are_explained(pretrained, new_session):
    sorting, behavior = new_session
    with pytest.raises(ValueError, match="already knows"):
        sip.finetune(pretrained, sorting, behavior, session_id="sim10", **FAST)
    one_dim = sip.Behavior(behavior.timestamps, behavior.values[:, 0])
    with pytest.raises(ValueError, match="dimensions"):
        sip.finetune(pretrained, sorting, one_dim, session_id="other", **FAST)
    with pytest.raises(ValueError, match="mode"):
        sip.finetune(pretrained, sorting, behavior, mode="lora", session_id="other", **FAST)


def test_unknown_model_name_lists_the_shipped_ones():
    with pytest.raises(FileNotFoundError, match="shipped"):
        sip.load_model("no-such-model")


_SAVED = {}


def _saved(model):
    import tempfile

    if id(model) not in _SAVED:
        _SAVED[id(model)] = sip.save_model(model, tempfile.mkdtemp() + "/pretrained")
    return _SAVED[id(model)]
