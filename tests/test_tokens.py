import numpy as np
import pytest
from spikeinterface.core import NumpySorting

import spikeinterface_poyo as sip
from spikeinterface_poyo.core.spikes import TokenType
from spikeinterface_poyo.core.windows import window_queries as collate_query_windows
from spikeinterface_poyo.models.poyo.tokenizer import collate_spike_windows


def make_sorting():
    # unit 0: spikes at 0.1, 0.5, 1.5 s; unit 1: 0.7 s; unit 2: none (kept)
    samples = np.array([100, 500, 700, 1500])
    labels = np.array(["a", "a", "b", "a"])
    return NumpySorting.from_samples_and_labels([samples], [labels], 1000.0, unit_ids=["a", "b", "c"])


def test_tokens_are_sorted_namespaced_and_keep_silent_units():
    (tokens,) = sip.sorting_to_tokens(make_sorting(), session_id="rat7")
    np.testing.assert_allclose(tokens.times, [0.1, 0.5, 0.7, 1.5])
    np.testing.assert_array_equal(tokens.unit_index, [0, 0, 1, 0])
    assert tokens.unit_ids == ["rat7/a", "rat7/b", "rat7/c"]
    assert tokens.num_units == 3


def test_collate_cuts_windows_and_adds_start_end_tokens():
    (tokens,) = sip.sorting_to_tokens(make_sorting())
    vocab_index = np.array([5, 6, 7])
    batch = collate_spike_windows(tokens, np.array([0.0, 1.0]), 1.0, vocab_index)
    mask = batch["input_mask"].numpy()
    units = batch["input_unit_index"].numpy()
    types = batch["input_token_type"].numpy()
    times = batch["input_timestamps"].numpy()
    # window 0: 6 start/end tokens + 3 spikes; window 1: 6 + 1 spike
    assert mask.sum(axis=1).tolist() == [9, 7]
    assert types[0, :6].tolist() == [TokenType.START, TokenType.END] * 3
    assert units[0, :6].tolist() == [5, 5, 6, 6, 7, 7]
    np.testing.assert_allclose(times[0, 6:9], [0.1, 0.5, 0.7], atol=1e-6)
    assert units[0, 6:9].tolist() == [5, 5, 6]
    np.testing.assert_allclose(times[1, 6], 0.5, atol=1e-6)  # 1.5 s relative to the 1.0 s start
    assert units[1][~mask[1]].tolist() == [0] * (~mask[1]).sum()  # padding points at "NA"


def test_unit_dropout_removes_spikes_and_edge_tokens_of_dropped_units():
    (tokens,) = sip.sorting_to_tokens(make_sorting())
    keep = np.array([[True, False, True]])
    batch = collate_spike_windows(tokens, np.array([0.0]), 1.0, np.array([1, 2, 3]), keep)
    kept_units = batch["input_unit_index"][batch["input_mask"]].tolist()
    assert 2 not in kept_units
    assert sorted(kept_units) == [1, 1, 1, 1, 3, 3]


def test_query_windows():
    t = np.arange(0, 3, 0.25)
    index, mask, rel = collate_query_windows(t, np.array([0.0, 2.5]), 1.0)
    assert mask.sum(axis=1).tolist() == [4, 2]
    np.testing.assert_allclose(rel[1, :2], [0.0, 0.25])


def test_empty_sorting_is_refused():
    empty = NumpySorting.from_samples_and_labels(
        [np.array([], dtype=int)], [np.array([], dtype=int)], 1000.0, unit_ids=["a"]
    )
    with pytest.raises(ValueError, match="no spikes"):
        sip.sorting_to_tokens(empty)


def test_tokenising_a_real_sorting_goes_through_the_spike_vector():
    import spikeinterface.extractors as se
    from conftest import shared_file

    sorting = se.read_nwb_sorting(str(shared_file("m1_center_out.nwb")))
    (tokens,) = sip.sorting_to_tokens(sorting, session_id="m1")
    assert tokens.num_spikes == sum(len(sorting.get_unit_spike_train(u)) for u in sorting.unit_ids)
    assert np.all(np.diff(tokens.times) >= 0)
    assert "brain_area" in tokens.unit_properties
