"""Our POYO reproduces torch_brain 0.2.1's POYO, weights and outputs (fixture made by
tests/fixtures/make_torch_brain_fixture.py)."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import spikeinterface_poyo as sip

FIXTURE = Path(__file__).parent / "fixtures" / "torch_brain_poyo"


def test_torch_brain_checkpoint_matches_its_outputs():
    model = sip.load_torch_brain_checkpoint(FIXTURE / "checkpoint.ckpt", device="cpu")
    batch = load_file(FIXTURE / "batch.safetensors")
    expected = batch.pop("output")
    with torch.no_grad():
        output = model(**batch)
    assert output.shape == expected.shape
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)
    # with autograd on, rotation takes its out-of-place path: the same function
    torch.testing.assert_close(model(**batch).detach(), expected, atol=1e-5, rtol=1e-5)
    assert model.unit_emb.vocab[1:] == [f"rat1/unit{i}" for i in range(7)]
    assert model.session_emb.vocab == ["NA", "rat1", "rat2"]
    # the torch_brain parameter names are ours too
    state = torch.load(FIXTURE / "checkpoint.ckpt", weights_only=True)["state_dict"]
    theirs = {k.removeprefix("model.") for k in state if not k.endswith(".vocab")}
    assert theirs == set(model.state_dict())


def test_torch_brain_model_survives_our_save_and_load(tmp_path):
    model = sip.load_torch_brain_checkpoint(FIXTURE / "checkpoint.ckpt", device="cpu")
    batch = load_file(FIXTURE / "batch.safetensors")
    expected = batch.pop("output")
    sip.save_model(model, tmp_path / "imported")
    again = sip.load_model(tmp_path / "imported", device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(again(**batch), expected, atol=1e-5, rtol=1e-5)


def test_a_pickle_with_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": Payload()}, path)
    with pytest.raises(ValueError, match="weights-only"):
        sip.load_torch_brain_checkpoint(path)
