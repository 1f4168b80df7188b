"""The ``spikeinterface-poyo`` command line: train, evaluate, decode, and one-line errors."""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from uuid import uuid4

import numpy as np
import pynwb
import pytest

import spikeinterface_poyo as sip
from spikeinterface_poyo.cli import main
from spikeinterface_poyo.io import nwb_read
from spikeinterface_poyo.io.models import model_sha256

TRAIN_FRACTION = 0.7

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_session(path: Path, sorting, behavior=None) -> Path:
    """Units via ``nwbfile.add_unit`` and, optionally, the behaviour in a BehavioralTimeSeries."""
    from pynwb.behavior import BehavioralTimeSeries

    nwbfile = pynwb.NWBFile(
        session_description="simulated session for CLI tests",
        identifier=str(uuid4()),
        session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc),
    )
    for unit_id in sorting.unit_ids:
        nwbfile.add_unit(spike_times=sorting.get_unit_spike_train(unit_id, return_times=True), id=int(unit_id))
    if behavior is not None:
        series = pynwb.TimeSeries(name=behavior.name, data=behavior.values, timestamps=behavior.timestamps, unit="a.u.")
        nwbfile.create_processing_module("behavior", "behaviour").add(BehavioralTimeSeries(time_series=series))
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path


@pytest.fixture(scope="module")
def session():
    return sip.simulate_session(duration=30.0, num_units=12, seed=2)


@pytest.fixture(scope="module")
def trained(session, tmp_path_factory):
    """``train`` run once: the session file and the model folder it wrote."""
    sorting, behavior = session
    folder = tmp_path_factory.mktemp("trained")
    path = write_session(folder / "session.nwb", sorting, behavior)
    model_dir = folder / "decoder"
    argv = ["train", str(path), "--behavior", "velocity", "--output", str(model_dir), "--preset", "tiny"]
    argv += ["--max-time-s", "5", "--max-epochs", "1", "--train-fraction", str(TRAIN_FRACTION), "--seed", "3"]
    assert main(argv) == 0
    return path, model_dir


@pytest.fixture
def session_copy(trained, tmp_path):
    """A fresh copy of the training file, under the same name (so held-out scoring applies)."""
    path = tmp_path / trained[0].name
    shutil.copyfile(trained[0], path)
    return path


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("spikeinterface-poyo: error: ")
    return lines[0]


# ---------------------------------------------------------------------------------------------
# help


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "evaluate", "decode", "pretrain", "demo"):
        assert re.search(rf"^\s+{command}\s+\S", out, re.M), out


@pytest.mark.parametrize(
    "command, words",
    [
        ("train", ["--behavior", "--output", "--preset", "--max-time-s", "--train-fraction", "--seed"]),
        ("evaluate", ["--model", "--behavior", "--test-fraction", "R²"]),
        ("decode", ["--model", "--behavior", "--output", "--overwrite", "DecodedBehavior", "atomically"]),
        ("pretrain", ["--config", "torchrun", "resume", "[[sessions]]"]),
    ],
)
def test_subcommand_help(capsys, command, words):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for word in words:
        assert word in out


def test_missing_required_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "session.nwb", "--behavior", "velocity"])
    assert exit_info.value.code == 2
    assert "--output" in capsys.readouterr().err


def test_pretrain_config_errors_are_one_line(tmp_path, capsys):
    config = tmp_path / "corpus.json"
    config.write_text('{"output": "model", "sessions": [{"path": "missing.nwb", "behavior": "velocity"}]}')
    assert main(["pretrain", "--config", str(config)]) == 2
    assert "No NWB file at" in error_line(capsys)
    assert main(["pretrain", "--config", str(tmp_path / "absent.toml")]) == 2
    assert "No configuration file" in error_line(capsys)


# ---------------------------------------------------------------------------------------------
# train, evaluate, decode


def test_train_saved_a_loadable_model(trained, session):
    path, model_dir = trained
    model = sip.load_model(model_dir, device="cpu")
    record = model.meta["training"]
    assert record["preset"] == "tiny" and record["seed"] == 3
    assert record["sessions"] == ["session"] and record["source_file"] == "session.nwb"
    _, behavior = session
    cut = behavior.start_time + TRAIN_FRACTION * (behavior.end_time - behavior.start_time)
    assert record["train_interval"][1] < cut  # only the first 70 % was used


def test_evaluate_prints_r2_per_dimension(trained, session, capsys):
    path, model_dir = trained
    assert main(["evaluate", str(path), "--model", str(model_dir), "--behavior", "velocity"]) == 0
    captured = capsys.readouterr()
    assert "overlaps" not in captured.err  # the default test part is held out
    printed = dict(re.findall(r"^R² (\w+): (-?[\d.]+)$", captured.out, re.M))
    assert set(printed) == {"x", "y", "mean"}

    sorting, behavior = nwb_read.load_nwb_session(path, behavior="velocity")
    test = behavior.split(1 - 0.3)[1]
    model = sip.load_model(model_dir, device="cpu")
    expected = sip.r2_score(test, sip.decode_behavior(sorting, model, timestamps=test.timestamps, progress_bar=False))
    assert float(printed["x"]) == pytest.approx(expected["r2"][0], abs=1e-4)
    assert float(printed["mean"]) == pytest.approx(expected["mean"], abs=1e-4)


def test_evaluate_warns_when_scoring_training_data(trained, capsys):
    path, model_dir = trained
    argv = ["evaluate", str(path), "--model", str(model_dir), "--behavior", "velocity", "--test-fraction", "0.9"]
    assert main(argv) == 0
    assert "reaches into the model's training data; scoring only the time after it" in capsys.readouterr().err


def test_decode_writes_predictions_with_provenance(trained, session_copy, capsys):
    _, model_dir = trained
    assert main(["decode", str(session_copy), "--model", str(model_dir), "--behavior", "velocity"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"velocity, held out from [\d.]+ s: R² mean -?[\d.]+ \(x -?[\d.]+, y -?[\d.]+\)", out), out

    decoded, meta = nwb_read.read_predictions_from_nwb(session_copy, "decoded_velocity", return_metadata=True)
    truth = sip.read_nwb_behavior(session_copy, "velocity")
    np.testing.assert_allclose(decoded.timestamps, truth.timestamps, atol=1e-9)
    assert meta["model_sha256"] == model_sha256(model_dir)
    assert meta["preset"] == "tiny" and meta["training_sessions"] == ["session"]
    # the stored R² covers held-out time only, never the model's training data
    start = meta["metrics"]["held_out_from_s"]
    assert start >= truth.start_time + 0.7 * (truth.end_time - truth.start_time) - 0.1
    held = truth.timestamps >= start
    expected = sip.r2_score(truth.values[held], decoded.values[held])["mean"]
    assert meta["metrics"]["mean"] == pytest.approx(expected, abs=1e-6)
    assert len(meta["unit_ids"]) == 12


def test_decode_to_output_copy_leaves_the_session(trained, session_copy, tmp_path):
    _, model_dir = trained
    digest = sha256(session_copy)
    output = tmp_path / "decoded.nwb"
    assert main(["decode", str(session_copy), "--model", str(model_dir), "--output", str(output)]) == 0
    assert sha256(session_copy) == digest
    assert nwb_read.read_predictions_from_nwb(output).name == "decoded_velocity"


def test_decode_twice_needs_overwrite(trained, session_copy, capsys):
    _, model_dir = trained
    argv = ["decode", str(session_copy), "--model", str(model_dir)]
    assert main(argv) == 0
    digest = sha256(session_copy)
    capsys.readouterr()
    assert main(argv) == 2
    assert "--overwrite" in error_line(capsys)
    assert sha256(session_copy) == digest
    assert main([*argv, "--overwrite", "--name", "decoded_velocity"]) == 0


def test_decode_without_true_behaviour(trained, session, tmp_path, capsys):
    sorting, _ = session
    _, model_dir = trained
    path = write_session(tmp_path / "units_only.nwb", sorting)
    assert main(["decode", str(path), "--model", str(model_dir)]) == 0
    assert "R²" not in capsys.readouterr().out
    decoded, meta = nwb_read.read_predictions_from_nwb(path, return_metadata=True)
    assert meta["metrics"] is None
    model = sip.load_model(model_dir, device="cpu")
    assert 1 / np.median(np.diff(decoded.timestamps)) == pytest.approx(model.meta["behavior"]["rate"])


# ---------------------------------------------------------------------------------------------
# errors: one line, exit status 2


@pytest.mark.parametrize(
    "make_argv, fragment",
    [
        (lambda p, m: ["evaluate", str(p.with_name("nope.nwb")), "--model", str(m), "--behavior", "velocity"], "No"),
        (lambda p, m: ["evaluate", str(p), "--model", str(m), "--behavior", "speed"], "'speed'"),
        (lambda p, m: ["decode", str(p), "--model", str(m), "--behavior", "speed"], "'speed'"),
        (lambda p, m: ["decode", str(p), "--model", str(p.parent), "--behavior", "velocity"], "config.json"),
        (lambda p, m: ["train", str(p), "--behavior", "velocity", "--output", str(p), "--max-epochs", "1"], "exists"),
    ],
    ids=["missing-file", "unknown-behaviour", "decode-unknown-behaviour", "not-a-model", "output-is-a-file"],
)
def test_errors_are_one_line_with_status_2(trained, session_copy, capsys, make_argv, fragment):
    _, model_dir = trained
    digest = sha256(session_copy)
    assert main(make_argv(session_copy, model_dir)) == 2
    assert fragment in error_line(capsys)
    assert sha256(session_copy) == digest


def test_read_only_file_is_reported(trained, session_copy, capsys):
    _, model_dir = trained
    digest = sha256(session_copy)
    session_copy.chmod(0o444)
    try:
        assert main(["decode", str(session_copy), "--model", str(model_dir)]) == 2
    finally:
        session_copy.chmod(0o644)
    assert "read-only" in error_line(capsys)
    assert sha256(session_copy) == digest


def test_python_dash_m_runs_the_cli(tmp_path, monkeypatch, capsys):
    import runpy

    missing = tmp_path / "missing.nwb"
    argv = ["spikeinterface-poyo", "evaluate", str(missing), "--model", str(tmp_path), "--behavior", "velocity"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("spikeinterface_poyo", run_name="__main__")
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"spikeinterface-poyo: error: No NWB file at {missing}."]
    assert captured.out == ""


def test_decode_into_a_companion_leaves_the_session_untouched(trained, session_copy, capsys):
    _, model_dir = trained
    digest = sha256(session_copy)
    argv = ["decode", str(session_copy), "--model", str(model_dir), "--storage", "companion"]
    assert main(argv) == 0
    assert sha256(session_copy) == digest
    companion = sip.default_companion_path(session_copy)
    assert f"to {companion}" in capsys.readouterr().out
    decoded, meta = nwb_read.read_predictions_from_nwb(session_copy, "decoded_velocity", return_metadata=True)
    assert meta["nwb_path"] == companion and len(decoded) > 0
    # the name is taken in the pair now: refused before decoding, whichever file would be written
    assert main(["decode", str(session_copy), "--model", str(model_dir), "--storage", "copy"]) == 2
    assert "already holds" in capsys.readouterr().err
