"""Training checkpoints: a killed run resumes and ends where an uninterrupted one ends."""

import json
import signal
import subprocess
import sys
import time
import warnings

import pytest
import torch
from safetensors.torch import load_file

import spikeinterface_poyo as sip
from spikeinterface_poyo.training.checkpoints import CheckpointMismatch

SESSIONS = [{"simulated": {"seed": s, "duration": 60.0, "num_units": 20}, "session_id": f"sim{s}"} for s in (31, 32)]
TRAINING = {"max_epochs": 6, "max_time_s": None, "batch_size": 16}


def write_config(folder, resume: bool):
    config = {
        "output": "model",
        "preset": "tiny",
        "seed": 4,
        "training": TRAINING,
        "checkpoint": {"dir": "checkpoints", "every": 5, "resume": resume},
        "sessions": SESSIONS,
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.json").write_text(json.dumps(config))
    return folder / "corpus.json"


def cli(config, **kwargs):
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "spikeinterface_poyo", "pretrain", "--config", str(config)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def wait_for_checkpoint(folder, min_step: int, process, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [p for p in folder.glob("step-*") if (p / "manifest.json").exists()]
        if any(int(p.name.split("-")[1]) >= min_step for p in done):
            return
        if process.poll() is not None:
            pytest.fail(f"training ended before step {min_step}: {process.stderr.read()[-2000:]}")
        time.sleep(0.05)
    pytest.fail(f"no checkpoint at step {min_step} within {timeout} s")


def saved_weights(folder):
    return load_file(folder / "model" / "model.safetensors")


def test_sigkilled_run_resumes_and_ends_like_an_uninterrupted_one(tmp_path):
    straight = cli(write_config(tmp_path / "straight", resume=False))
    assert straight.wait(timeout=300) == 0, straight.stderr.read()[-2000:]

    killed_dir = tmp_path / "killed"
    killed = cli(write_config(killed_dir, resume=True))
    wait_for_checkpoint(killed_dir / "checkpoints", min_step=20, process=killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert not (killed_dir / "model").exists()

    resumed = cli(killed_dir / "corpus.json")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-2000:]
    record = json.loads((killed_dir / "model" / "config.json").read_text())["meta"]["training"]
    assert record["resumed_from"].startswith("step-")
    reference = json.loads((tmp_path / "straight" / "model" / "config.json").read_text())["meta"]["training"]
    assert record["steps"] == reference["steps"]
    for key in ("train_loss", "val_r2"):
        assert record["history"][key] == pytest.approx(reference["history"][key], abs=1e-6)
    a, b = saved_weights(tmp_path / "straight"), saved_weights(killed_dir)
    for name in a:  # stated tolerance: 1e-6 (identical on CPU in practice)
        torch.testing.assert_close(b[name], a[name], atol=1e-6, rtol=0, msg=name)


@pytest.fixture(scope="module")
def sessions():
    return [(*sip.simulate_session(duration=60.0, num_units=12, seed=s), f"s{s}") for s in (41, 42)]


TINY = dict(preset="tiny", max_epochs=2, max_time_s=None, batch_size=8, progress_bar=False, seed=1)


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, sessions, one_torch_thread):
    reference = sip.pretrain(sessions, **TINY)
    folder = tmp_path / "checkpoints"
    sip.pretrain(sessions, checkpoint_dir=folder, checkpoint_every=4, **TINY)
    latest, previous = sorted(folder.glob("step-*"), reverse=True)[:2]
    weights = latest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a torn write
    with pytest.warns(UserWarning, match=f"{latest.name} is unreadable.*resuming from {previous.name}"):
        model = sip.pretrain(sessions, checkpoint_dir=folder, resume=True, **TINY)
    assert model.meta["training"]["resumed_from"] == previous.name
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, atol=1e-6, rtol=0, msg=name)


def test_partial_checkpoint_folder_is_ignored(tmp_path, sessions, one_torch_thread):
    folder = tmp_path / "checkpoints"
    sip.pretrain(sessions, checkpoint_dir=folder, checkpoint_every=4, **TINY)
    (folder / ".step-99999999.partial").mkdir()  # what a crash during a write leaves
    (folder / "step-99999998").mkdir()  # no manifest: never completed
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = sip.pretrain(sessions, checkpoint_dir=folder, resume=True, **TINY)
    assert any("step-99999998 is unreadable" in str(w.message) for w in caught)
    assert model.meta["training"]["resumed_from"] != "step-99999998"


def test_existing_checkpoints_are_not_overwritten_without_resume(tmp_path, sessions, one_torch_thread):
    folder = tmp_path / "checkpoints"
    sip.pretrain(sessions, checkpoint_dir=folder, **TINY)
    kept = sorted(p.name for p in folder.iterdir())
    assert len(kept) == 2  # keeps the newest two
    with pytest.raises(FileExistsError, match="resume=True"):
        sip.pretrain(sessions, checkpoint_dir=folder, **TINY)
    assert sorted(p.name for p in folder.iterdir()) == kept


def test_checkpoint_of_other_sessions_is_refused(tmp_path, sessions, one_torch_thread):
    folder = tmp_path / "checkpoints"
    sip.pretrain(sessions, checkpoint_dir=folder, **TINY)
    other = [(*sip.simulate_session(duration=60.0, num_units=12, seed=43), "s43"), sessions[1]]
    with pytest.raises(CheckpointMismatch, match="another model or set of sessions"):
        sip.pretrain(other, checkpoint_dir=folder, resume=True, **TINY)


def test_resume_with_changed_training_settings_is_refused(tmp_path, sessions, one_torch_thread):
    folder = tmp_path / "checkpoints"
    sip.pretrain(sessions, checkpoint_dir=folder, **TINY)
    changed = {**TINY, "lr": 5e-3}
    with pytest.raises(CheckpointMismatch, match=r"other training settings \(lr: 0.002 -> 0.005\)"):
        sip.pretrain(sessions, checkpoint_dir=folder, resume=True, **changed)
