"""Shared fixtures: real recordings from ../shared/data and small simulated sessions."""

import os
from pathlib import Path

import pytest

import spikeinterface_poyo as sip

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: The recordings ../shared/data/README.md lists; tests that go over all of them use this list, so
#: a missing one is noticed (a failure in CI) rather than silently left out.
SHARED_FILES = [
    "chewie_20131003_center_out.nwb",
    "human_mtl_two_regions.nwb",
    "ibl_neuropixels_120s.nwb",
    "jenkins_mc_maze_2trials.nwb",
    "linear_track.nwb",
    "m1_center_out.nwb",
    "mihi_20140303_center_out.nwb",
    "reach_to_grasp.nwb",
    "w_maze.nwb",
]


def shared_file(name: str) -> Path:
    """A real recording from ../shared/data: in CI (``CI=true``) a missing one fails the test."""
    path = DATA / name
    if not path.exists():
        message = f"{path} is not here (CI puts ../shared beside the clone)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def simulated():
    """A 120 s simulated session: (sorting, behaviour)."""
    return sip.simulate_session(duration=120.0, num_units=40, seed=1)


@pytest.fixture(scope="session")
def tiny_model(simulated):
    """A tiny model trained briefly on the simulated session."""
    sorting, behavior = simulated
    return sip.train_decoder(sorting, behavior, preset="tiny", max_epochs=2, max_time_s=20, progress_bar=False)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core machine: threads only contend (one thread is ~30x faster here)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
