"""Lazy session loading: a corpus larger than memory trains like one that fits."""

import json

import numpy as np
import pytest
import torch
from conftest import shared_file

import spikeinterface_poyo as sip
from spikeinterface_poyo.core.sessions import SessionSource, SessionStore
from spikeinterface_poyo.io.nwb_read import nwb_session
from spikeinterface_poyo.training.run_config import read_config, session_sources


def counting_sources(seeds, loads):
    def make(seed):
        def load():
            loads[seed] = loads.get(seed, 0) + 1
            return sip.simulate_session(duration=40.0, num_units=10, seed=seed)

        return SessionSource(f"s{seed}", load)

    return [make(seed) for seed in seeds]


def test_store_keeps_at_most_max_in_memory_and_reloads_on_demand():
    loads = {}
    store = SessionStore(counting_sources([1, 2, 3], loads), window=1.0, max_in_memory=1)
    assert len(store) == 3 and store.num_in_memory == 1
    assert loads == {1: 1, 2: 1, 3: 1}  # the scan reads each session once
    eager = SessionStore(counting_sources([1, 2, 3], {}), window=1.0)
    for k in (0, 1, 0, 2):
        data = store[k]
        assert store.num_in_memory == 1
        np.testing.assert_array_equal(data.tokens.times, eager[k].tokens.times)
        np.testing.assert_array_equal(data.targets, eager[k].targets)
    assert loads == {1: 3, 2: 2, 3: 2}


def test_lazy_pretraining_equals_eager_pretraining(one_torch_thread):
    kwargs = dict(preset="tiny", max_epochs=2, max_time_s=None, batch_size=8, progress_bar=False)
    loads = {}
    lazy = sip.pretrain(counting_sources([5, 6, 7], loads), max_sessions_in_memory=1, **kwargs)
    eager = sip.pretrain(
        [(*sip.simulate_session(duration=40.0, num_units=10, seed=s), f"s{s}") for s in (5, 6, 7)], **kwargs
    )
    assert sum(loads.values()) > 3  # sessions left memory and were read again
    for name, value in eager.state_dict().items():
        torch.testing.assert_close(lazy.state_dict()[name], value, msg=name)
    assert lazy.meta["normalization"] == eager.meta["normalization"]


def test_nwb_session_reads_only_when_asked():
    path = shared_file("w_maze.nwb")
    source = nwb_session(path, "position", time_range=(0.0, 300.0))
    assert source.session_id == "w_maze"
    sorting, behavior = source.load()
    assert sorting.get_num_units() == 25
    assert behavior.end_time < 300.0 and behavior.num_dimensions == 2
    from spikeinterface_poyo.io.nwb_read import read_nwb_epochs

    running = read_nwb_epochs(path, "run")
    _, during_runs = nwb_session(path, "position", epochs="run").load()
    inside_runs = np.zeros(len(during_runs), dtype=bool)
    for start, stop in running:
        inside_runs |= (during_runs.timestamps >= start) & (during_runs.timestamps < stop)
    assert inside_runs.all() and len(during_runs) < len(sip.read_nwb_behavior(path, "position"))


def test_run_config_errors_name_the_fix(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"output": "m", "sessions": [{"path": "a.nwb"}]}))
    with pytest.raises(ValueError, match="behavior = "):
        session_sources(read_config(bad))
    bad.write_text(json.dumps({"output": "m", "sessions": [], "learning_rate": 1}))
    with pytest.raises(ValueError, match="unknown keys \\['learning_rate'\\]"):
        read_config(bad)
    with pytest.raises(ValueError, match="use a .json or .toml"):
        (tmp_path / "c.yaml").write_text("x: 1")
        read_config(tmp_path / "c.yaml")


def test_toml_config_paths_are_relative_to_the_file(tmp_path):
    config = tmp_path / "corpus.toml"
    config.write_text(
        'output = "model"\n[checkpoint]\ndir = "ckpt"\n'
        '[[sessions]]\npath = "data/a.nwb"\nbehavior = "hand_velocity"\n'
        "[[sessions]]\nsimulated = {seed = 1, duration = 30.0, num_units = 5}\n"
    )
    parsed = read_config(config)
    sources = session_sources(parsed)
    assert [s.session_id for s in sources] == ["a", "simulated_1"]
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "data" / "a.nwb")):
        sources[0].load()
    sorting, behavior = sources[1].load()
    assert sorting.get_num_units() == 5
