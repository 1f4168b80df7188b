"""Data-parallel training under torchrun: two gloo processes on this machine."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_file
from safetensors.torch import load_file

SCRIPT = Path(__file__).parent / "scripts" / "distributed_pretrain.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_thread_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def torchrun(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={free_port()}"]


def pretrain_under_torchrun(tmp_path, config: dict):
    """``spikeinterface-poyo pretrain`` of ``config`` in two gloo processes; asserts it succeeded."""
    path = tmp_path / "corpus.json"
    path.write_text(json.dumps(config))
    result = subprocess.run(
        [*torchrun(2), "-m", "spikeinterface_poyo", "pretrain", "--config", str(path)],
        capture_output=True,
        text=True,
        env=one_thread_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same pretraining, in one process and in two gloo processes."""
    root = tmp_path_factory.mktemp("ddp")
    single, double = root / "single", root / "double"
    env = one_thread_env()
    subprocess.run([sys.executable, str(SCRIPT), str(single)], check=True, env=env, timeout=300)
    subprocess.run([*torchrun(2), str(SCRIPT), str(double)], check=True, env=env, timeout=300)
    return single, double


def test_ranks_end_with_identical_weights(runs):
    _, double = runs
    a, b = load_file(double / "rank0.safetensors"), load_file(double / "rank1.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_distributed_loss_curve_matches_single_process(runs):
    single, double = runs
    one = json.loads((single / "rank0.json").read_text())
    two = json.loads((double / "rank0.json").read_text())
    assert one["world_size"] == 1 and two["world_size"] == 2
    assert one["steps"] == two["steps"]  # the global batch, hence the schedule, is the same
    a, b = np.array(one["history"]["train_loss"]), np.array(two["history"]["train_loss"])
    assert len(a) == len(b)
    # different windows are drawn, so the curves agree only statistically: within 0.1 (of a
    # standardised-unit MSE that starts near 1) at every epoch, and both fall
    np.testing.assert_allclose(a, b, atol=0.1)
    assert a[-1] < 0.8 * a[0] and b[-1] < 0.8 * b[0]
    assert abs(one["best_val_r2"] - two["best_val_r2"]) < 0.1


def test_cli_pretrain_runs_under_torchrun(tmp_path):
    config = {
        "output": "model",
        "preset": "tiny",
        "training": {"max_epochs": 2, "max_time_s": None, "batch_size": 8},
        "sessions": [
            {"simulated": {"seed": s, "duration": 40.0, "num_units": 10}, "session_id": f"s{s}"} for s in (1, 2, 3)
        ],
    }
    result = pretrain_under_torchrun(tmp_path, config)
    assert "with 2 process(es)" in result.stdout
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["config"]["session_vocab"] == ["NA", "s1", "s2", "s3"]
    assert saved["meta"]["training"]["world_size"] == 2


def test_mtm_pretrains_under_torchrun_with_a_stitcher_per_session(tmp_path):
    # sessions of different unit counts: each step trains one session's stitchers, so the other
    # session's take no gradient there, which DistributedDataParallel must accept
    config = {
        "family": "mtm",
        "output": "model",
        "model": {"dim": 32, "depth": 1, "heads": 2, "num_bins": 50},
        "training": {"max_epochs": 2, "max_time_s": None, "batch_size": 8, "windows_per_epoch": 64},
        "sessions": [
            {"simulated_regions": {"seed": 1, "duration": 60.0, "units_per_region": 5}, "session_id": "a"},
            {"simulated_regions": {"seed": 2, "duration": 60.0, "units_per_region": 7}, "session_id": "b"},
        ],
    }
    result = pretrain_under_torchrun(tmp_path, config)
    assert "MtM pretrained on 2 sessions with 2 process(es)" in result.stdout
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["family"] == "mtm" and saved["meta"]["training"]["world_size"] == 2
    assert [s["session_id"] for s in saved["config"]["sessions"]] == ["a", "b"]


def test_masked_objective_pretrains_under_torchrun_with_an_unlabelled_nwb_session(tmp_path):
    # a session with behaviour (simulated) and one NWB file read for its units only: the
    # masked objective trains the encoding head on both, the behaviour loss on the first
    config = {
        "output": "model",
        "preset": "tiny",
        "objective": "both",
        "model": {"schemes": "neuron"},
        "training": {"max_epochs": 2, "max_time_s": None, "batch_size": 8},
        "sessions": [
            {"simulated": {"seed": 1, "duration": 40.0, "num_units": 10}, "session_id": "s1"},
            {"path": str(shared_file("ibl_neuropixels_120s.nwb")), "session_id": "ibl"},
        ],
    }
    result = pretrain_under_torchrun(tmp_path, config)  # the second process holds no labelled session
    assert "with 2 process(es)" in result.stdout
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["config"]["architecture"]["encoding_head"] is True
    assert saved["meta"]["training"]["labelled_sessions"] == ["s1"]
    assert saved["meta"]["training"]["objective"] == "both" and saved["meta"]["training"]["world_size"] == 2
    unlabelled = dict(config, objective="behavior", sessions=[{"path": str(shared_file("ibl_neuropixels_120s.nwb"))}])
    (tmp_path / "bad.json").write_text(json.dumps(unlabelled))
    command = [sys.executable, "-m", "spikeinterface_poyo", "pretrain", "--config", str(tmp_path / "bad.json")]
    refused = subprocess.run(command, capture_output=True, text=True, env=one_thread_env())
    assert refused.returncode != 0 and 'objective = "masked"' in refused.stderr
