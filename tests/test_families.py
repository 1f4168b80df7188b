"""The model protocol: the baselines and EIT are families like POYO (saved, reloaded in a fresh process,
run by the analyzer extension and the command line), the estimator face, and the model folder's
refusals (unknown family, newer schema)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import spikeinterface.full as si

import spikeinterface_poyo as sip
from spikeinterface_poyo.cli import main
from spikeinterface_poyo.io.nwb_write import write_session_nwb

FAST = {
    "wiener": lambda: sip.WienerFilter(),
    "mlp": lambda: sip.MLPDecoder(max_epochs=3, seed=0),
    "gru": lambda: sip.GRUDecoder(max_epochs=2, seed=0),
    "eit": lambda: sip.EITDecoder(max_epochs=8, heads=2, head_dim=16, seed=0),  # narrower attention: CI's 2 cores
}


@pytest.fixture(scope="module")
def session():
    sorting, behavior = sip.simulate_session(duration=60.0, num_units=12, seed=2)
    return sorting, behavior, *behavior.split(0.7)


@pytest.fixture(scope="module", params=sorted(FAST))
def fitted(request, session, tmp_path_factory):
    sorting, _, train, test = session
    decoder = FAST[request.param]().fit(sorting, train)
    folder = sip.save_model(decoder, tmp_path_factory.mktemp(request.param) / "model")
    return request.param, decoder, folder


def test_baselines_reload_in_a_fresh_process_with_the_same_predictions(fitted, session, tmp_path):
    family, decoder, folder = fitted
    sorting, _, _, test = session
    expected = decoder.predict(sorting, test.timestamps)
    assert json.loads((folder / "config.json").read_text())["family"] == family
    np.save(tmp_path / "t.npy", test.timestamps)
    sorting.save(folder=tmp_path / "sorting")
    code = (
        "import numpy as np, spikeinterface as si, spikeinterface_poyo as sip; "
        f"s = si.load({str(tmp_path / 'sorting')!r}); m = sip.load_model({str(folder)!r}); "
        f"d = sip.decode_behavior(s, m, timestamps=np.load({str(tmp_path / 't.npy')!r}), session_id='session', "
        f"progress_bar=False); np.save({str(tmp_path / 'out.npy')!r}, d.values); print(type(m).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == type(decoder).__name__
    # float32 sums may be ordered differently under another thread count: agreement to 1e-5
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected.values, rtol=1e-5, atol=1e-5)
    assert sip.r2_score(test, expected)["mean"] > 0.3  # the simulated velocity is well decodable


def test_baselines_run_in_the_analyzer_extension(fitted, session):
    _, decoder, folder = fitted
    sorting, _, _, test = session
    recording = si.generate_recording(num_channels=4, durations=[60.0], sampling_frequency=30000.0, seed=0)
    analyzer = si.create_sorting_analyzer(sorting, recording, sparse=False)
    stored = analyzer.compute("poyo_decoding", model=folder, timestamps=test.timestamps).get_data()
    np.testing.assert_allclose(stored.values, decoder.predict(sorting, test.timestamps).values, atol=1e-6)


def test_baselines_decode_from_the_command_line(fitted, session, tmp_path, capsys):
    family, _, folder = fitted
    sorting, behavior, _, _ = session
    path = write_session_nwb(tmp_path / "session.nwb", sorting, behavior, "simulated")
    # the NWB copy holds the same spikes but is another read of them: the session is named
    assert main(["decode", str(path), "--model", str(folder), "--session-id", "session"]) == 0
    decoded = sip.read_predictions_from_nwb(path, "decoded_velocity")
    assert len(decoded) == len(behavior)
    # and the command line trains the family too, recognising its own file afterwards
    out_dir = tmp_path / "trained"
    train = ["train", str(path), "--behavior", "velocity", "--output", str(out_dir), "--family", family]
    assert main([*train, "--max-epochs", "1"]) == 0
    assert main(["decode", str(path), "--model", str(out_dir), "--name", "again"]) == 0
    assert "held out from" in capsys.readouterr().out


def test_another_sessions_model_fails_loudly_from_python_and_the_cli(fitted, tmp_path, capsys):
    _, decoder, folder = fitted
    other, other_behavior = sip.simulate_session(duration=60.0, num_units=12, seed=7)  # the same unit ids
    with pytest.raises(sip.UnknownSessionError, match="not one the model was trained on"):
        decoder.predict(other, other_behavior.timestamps)
    path = write_session_nwb(tmp_path / "other.nwb", other, other_behavior, "another session")
    before = path.read_bytes()
    assert main(["decode", str(path), "--model", str(folder)]) == 2
    assert "not one the model was trained on" in capsys.readouterr().err
    assert path.read_bytes() == before  # nothing written into the wrong file


def test_estimators_follow_the_scikit_learn_contract(session, tmp_path):
    sorting, _, train, test = session
    mlp = sip.MLPDecoder(max_epochs=2)
    assert mlp.get_params()["max_epochs"] == 2
    assert mlp.set_params(hidden=32) is mlp and mlp.hidden == 32
    with pytest.raises(ValueError, match="not a setting of MLPDecoder"):
        mlp.set_params(width=3)
    with pytest.raises(sip.NotFittedError, match="not fitted yet"):
        mlp.predict(sorting, test.timestamps)
    config = sip.TrainingConfig(max_epochs=1, max_time_s=20, progress_bar=False)
    poyo = sip.POYODecoder(preset="tiny", config=config)
    with pytest.raises(sip.NotFittedError, match="POYODecoder is not fitted"):
        poyo.save(tmp_path / "nothing")
    score = poyo.fit(sorting, train).score(sorting, test)
    assert -1.0 < score <= 1.0
    loaded = sip.POYODecoder.load(poyo.save(tmp_path / "poyo"))
    assert loaded.score(sorting, test) == pytest.approx(score, abs=1e-6)
    with pytest.raises(TypeError, match="not one WienerFilter loads"):
        sip.WienerFilter.load(tmp_path / "poyo")
    assert "preset='tiny'" in repr(poyo)


def test_model_folders_refuse_unknown_families_and_newer_schemas(fitted, tmp_path):
    _, decoder, folder = fitted
    path = sip.save_model(decoder, tmp_path / "copy")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "family": "hyena"}))
    with pytest.raises(ValueError, match="family 'hyena', which this installation does not know"):
        sip.load_model(path)
    (path / "config.json").write_text(json.dumps({**config, "family_version": 99}))
    with pytest.raises(ValueError, match="Upgrade spikeinterface-poyo"):
        sip.load_model(path)
    (path / "config.json").write_text(json.dumps({**config, "schema_version": 99}))
    with pytest.raises(ValueError, match="reads schemas up to"):
        sip.load_model(path)


def test_an_interrupted_save_keeps_the_previous_model(fitted, tmp_path, monkeypatch):
    from spikeinterface_poyo.io import models

    _, decoder, _ = fitted
    path = sip.save_model(decoder, tmp_path / "model")
    before = {p.name: p.read_bytes() for p in path.iterdir()}

    def fail(*args, **kwargs):
        raise RuntimeError("disk went away")

    monkeypatch.setattr(models, "write_json", fail)
    with pytest.raises(RuntimeError, match="disk went away"):
        sip.save_model(decoder, path)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging folder left behind


def test_the_shipped_schema_1_model_still_loads():
    model = sip.load_model("poyo_small_sim_hc", device="cpu")
    assert isinstance(model, sip.POYO) and len(model.session_units()) == 18


def test_training_settings_are_checked():
    with pytest.raises(ValueError, match="max_time_s must be positive"):
        sip.TrainingConfig(max_time_s=0)
    with pytest.raises(ValueError, match="batch_size must be positive"):
        sip.TrainingConfig(batch_size=0)
    with pytest.raises(SystemExit):
        main(["train", "x.nwb", "--behavior", "v", "--output", "o", "--max-time-s", "-5"])
