"""The streaming decoder: the same predictions as offline causal decoding of the same spikes (a
real session replayed in random-sized chunks, threshold crossings of a recording chunk by
chunk), causality while streaming, bounded state, the FALCON adapter, and bad input."""

import warnings

import numpy as np
import pytest
import torch
from conftest import shared_file

import spikeinterface_poyo as sip
from spikeinterface_poyo.core.spikes import SpikeTokens, sorting_to_tokens
from spikeinterface_poyo.models.poyo import POYO
from spikeinterface_poyo.simulation import simulate_recording

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def untrained(unit_ids, context="causal", session="s", seed=0) -> POYO:
    """A seeded `tiny` POYO (untrained: its outputs still depend on every spike it sees)."""
    torch.manual_seed(seed)
    model = POYO.from_preset("tiny", dim_out=2, context=context).eval()
    model.unit_emb.extend_vocab([f"{session}/{u}" for u in unit_ids])
    model.session_emb.extend_vocab([session])
    return model


def replay(stream, tokens: SpikeTokens, cuts, unit_ids, start=None):
    """Push the spikes of ``tokens`` in the chunks between ``cuts``; all the predictions made."""
    ids = np.asarray(unit_ids)[tokens.unit_index]
    times, values = [], []
    for a, b in zip(cuts[:-1], cuts[1:]):
        lo, hi = np.searchsorted(tokens.times, [a, b])
        out = stream.push(tokens.times[lo:hi], ids[lo:hi], end_time=b)
        times.append(out.times)
        values.append(out.values)
    return np.concatenate(times), np.concatenate(values)


def random_cuts(rng, start, end, mean_chunk):
    """Chunk edges from ``start`` to ``end``: chunks of random lengths (a few ms to ~3 mean chunks)."""
    lengths = rng.exponential(mean_chunk, int(3 * (end - start) / mean_chunk) + 10)
    edges = start + np.cumsum(np.concatenate([[0.0], lengths]))
    return np.append(edges[edges < end], end)


@pytest.fixture(scope="module")
def m1():
    """The first 60 s of the real M1 session, and a tiny causal decoder trained on them briefly."""
    path = shared_file("m1_center_out.nwb")
    sorting, behavior = sip.load_nwb_session(path, behavior="hand_velocity")
    start = float(behavior.timestamps[0])
    train = behavior.time_slice(start, start + 60.0)
    model = sip.train_decoder(sorting, train, "tiny", context="causal", max_epochs=1, max_time_s=None,
                              progress_bar=False, seed=0)  # fmt: skip
    return sorting, model


def test_streaming_equals_offline_causal_decoding_on_a_real_session_in_random_chunks(m1):
    sorting, model = m1
    tokens = sorting_to_tokens(sorting, "session")[0]
    end = tokens.start_time + 6.0
    rng = np.random.default_rng(0)
    stream = sip.StreamingDecoder(model, hop=0.02, start_time=tokens.start_time)
    times, values = replay(stream, tokens, random_cuts(rng, tokens.start_time, end, 0.05), sorting.unit_ids)
    np.testing.assert_allclose(np.diff(times), 0.02, atol=1e-9)  # one prediction per hop, none skipped
    assert times[-1] == pytest.approx(end, abs=0.02)
    offline = sip.decode_behavior(sorting, model, timestamps=times, progress_bar=False)  # the model's context: causal
    assert np.isnan(values).sum() == np.isnan(offline.values).sum() == 2 * 49  # the first window: no context
    np.testing.assert_allclose(values, offline.values, atol=1e-5, rtol=0)
    assert np.nanstd(values) > 1e-3  # a real, varying readout, not a constant

    # a sorting replayed chunk by chunk goes through the same path
    again = sip.StreamingDecoder(model, hop=0.02)
    cuts = random_cuts(rng, tokens.start_time, end, 0.3)
    parts = [again.push_sorting_chunk(sorting, a, b) for a, b in zip(cuts[:-1], cuts[1:])]
    np.testing.assert_allclose(np.concatenate([p.values for p in parts]), values, atol=1e-5)
    assert again.normalized_latency > 0 and again.neural_time_s == pytest.approx(6.0)


def test_one_hop_pushes_take_the_one_window_path_and_equal_offline(m1):
    """Pushing one hop at a time (the closed-loop case) runs CausalWindowStep, which keeps the edge
    tokens' attention and merges the spikes' into it: with the small preset's heads and blocks it
    matches offline causal decoding to 1e-5, windows without any spike included."""
    sorting, _ = m1
    tokens = sorting_to_tokens(sorting, "session")[0]
    start = tokens.start_time
    quiet = (tokens.times < start + 1.5) | (tokens.times >= start + 2.8)  # 1.3 s with no spike
    tokens = SpikeTokens(tokens.times[quiet], tokens.unit_index[quiet], tokens.unit_ids, "session", start, start + 4.0)
    torch.manual_seed(0)
    model = POYO.from_preset("small", dim_out=2, context="causal", emb_init_scale=1.0).eval()  # outputs that vary
    model.unit_emb.extend_vocab(tokens.unit_ids)
    model.session_emb.extend_vocab(["session"])
    stream = sip.StreamingDecoder(model, hop=0.02, start_time=start)
    calls, step = [], stream._step
    stream._step = lambda *args: calls.append(len(args[0])) or step(*args)
    times, values = replay(stream, tokens, start + 0.02 * np.arange(201), sorting.unit_ids)
    assert len(calls) == len(times) - 49 and 0 in calls  # every ready hop, silent windows among them
    offline = model.predict_segment(tokens, times, "session")
    np.testing.assert_allclose(values, offline, atol=1e-5, rtol=0)
    assert np.nanstd(values) > 1e-3


def test_streaming_is_causal_even_when_a_chunk_reaches_past_the_prediction(m1):
    sorting, model = m1
    tokens = sorting_to_tokens(sorting, "session")[0]
    start, t_cut = tokens.start_time, tokens.start_time + 2.5
    keep = tokens.times < t_cut + 1e-3
    rng = np.random.default_rng(1)
    extra = np.sort(rng.uniform(t_cut + 1e-3, start + 4.0, 500))
    changed = SpikeTokens(
        np.concatenate([tokens.times[keep], extra]),
        np.concatenate([tokens.unit_index[keep], rng.integers(tokens.num_units, size=len(extra))]),
        tokens.unit_ids, "session", start, start + 4.0,
    )  # fmt: skip
    cuts = np.array([start, start + 1.7, start + 3.1, start + 4.0])  # the second chunk holds spikes after t_cut
    results = []
    for spikes in (tokens, changed):
        stream = sip.StreamingDecoder(model, hop=0.02, start_time=start)
        results.append(replay(stream, spikes, cuts, sorting.unit_ids))
    (times, a), (_, b) = results
    before, after = times <= t_cut, times > t_cut + 0.1
    # the same to float rounding (batches of other padding sum in another order), while what comes
    # after t_cut moves every later prediction by far more
    np.testing.assert_allclose(a[before], b[before], atol=1e-7, rtol=0)
    assert np.abs(a[after] - b[after]).max(axis=1).min() > 1e-4


@pytest.fixture(scope="module")
def toy():
    """A simulated session and an untrained causal model of its units."""
    sorting, _ = sip.simulate_session(duration=8.0, num_units=6, seed=5)
    unit_ids = [str(u) for u in sorting.unit_ids]
    return sorting_to_tokens(sorting, "s")[0], unit_ids, untrained(unit_ids)


def test_a_gap_gives_nan_until_a_window_of_new_data_then_decodes_from_it(toy):
    tokens, unit_ids, model = toy
    ids = np.asarray(unit_ids)[tokens.unit_index]
    stream = sip.StreamingDecoder(model, hop=0.05, start_time=0.0)
    first = tokens.times < 2.0
    stream.push(tokens.times[first], ids[first], end_time=2.0)
    after = tokens.times >= 4.0
    with pytest.warns(sip.InsufficientContextWarning, match="too little context"):
        out = stream.push(tokens.times[after], ids[after], start_time=4.0, end_time=tokens.end_time)
    ready = out.times >= 5.0 - 1e-9  # a full window after the gap's end
    assert np.isnan(out.values[~ready]).all() and np.isfinite(out.values[ready]).all()
    assert not out.ready[~ready].any() and out.ready[ready].all()
    assert out.times[0] == pytest.approx(2.05)  # the gap's times are reported, as NaN, on the grid
    # what it decodes after the gap is offline decoding of the data after the gap
    resumed = SpikeTokens(tokens.times[after], tokens.unit_index[after], tokens.unit_ids, "s", 4.0, tokens.end_time)
    np.testing.assert_allclose(out.values[ready], model.predict_segment(resumed, out.times[ready], "s"), atol=1e-5)


def test_reset_starts_a_new_block_and_the_state_stays_one_window(toy):
    tokens, unit_ids, model = toy
    stream = sip.StreamingDecoder(model, hop=0.025)
    cuts = np.linspace(0.0, tokens.end_time, 80)
    first_times, first = replay(stream, tokens, cuts, unit_ids)
    in_window = np.histogram(tokens.times, np.arange(0.0, tokens.end_time + 1.0, 0.1))[0]
    max_window = np.convolve(in_window, np.ones(12), "valid").max()  # spikes in any 1.2 s
    assert 0 < stream.buffered_spikes <= max_window
    stream.reset(0.0)
    assert stream.buffered_spikes == 0 and stream.neural_time_s == 0
    again_times, again = replay(stream, tokens, cuts, unit_ids)
    np.testing.assert_array_equal(again_times, first_times)
    np.testing.assert_allclose(again, first, atol=1e-6)


def test_bad_input_is_refused_saying_what_to_do(toy):
    tokens, unit_ids, model = toy
    with pytest.raises(ValueError, match="does not divide the model's 1 s window"):
        sip.StreamingDecoder(model, hop=0.03)
    with pytest.raises(ValueError, match="trained with centred windows.*context='causal'"):
        sip.StreamingDecoder(untrained(unit_ids, context="centred"), hop=0.02)
    assert sip.StreamingDecoder(untrained(unit_ids, context="centred"), allow_centred=True).hop == 0.02
    with pytest.raises(ValueError, match=r"not units of session 's'.*\['nope'\]"):
        sip.StreamingDecoder(model, unit_ids=["nope", unit_ids[0]])
    with pytest.raises(TypeError, match="cannot be streamed"):
        sip.StreamingDecoder(sip.WienerFilter().fit(*sip.simulate_session(duration=20.0, num_units=4, seed=1)))

    stream = sip.StreamingDecoder(model, hop=0.02)
    with pytest.raises(ValueError, match="in time order.*argsort"):
        stream.push([0.5, 0.2], [unit_ids[0], unit_ids[1]])
    with pytest.raises(ValueError, match="units \\['42'\\] that the decoder does not know"):
        stream.push([0.1, 0.2], [unit_ids[0], "42"])
    with pytest.raises(ValueError, match="one unit id per spike"):
        stream.push([0.1, 0.2], [unit_ids[0]])
    stream.push([0.1, 0.3], [unit_ids[0], unit_ids[1]], end_time=0.5)
    with pytest.raises(ValueError, match="goes back in time.*reset\\(\\)"):
        stream.push([0.4], [unit_ids[0]])
    with pytest.raises(ValueError, match="goes back in time"):
        stream.push([], [], start_time=0.3, end_time=0.6)
    with pytest.raises(ValueError, match="end_time 0.7.* before data"):
        stream.push([0.6, 0.8], [unit_ids[0], unit_ids[0]], end_time=0.7)
    # a refused chunk leaves the stream as it was
    out = stream.push([0.55], [unit_ids[0]], end_time=0.6)
    np.testing.assert_allclose(out.times, [0.52, 0.54, 0.56, 0.58, 0.6])
    assert stream.buffered_spikes == 3


def test_the_falcon_adapter_decodes_one_bin_of_counts_at_a_time(toy):
    tokens, unit_ids, model = toy
    model.meta = {"normalization": {"s": {"mean": [1.0, -1.0], "std": [2.0, 0.5]}}}
    falcon = sip.FalconDecoder(model, bin_size=0.05, fill_value="mean")
    bins = np.arange(0.0, 3.0 + 1e-9, 0.05)
    counts = np.stack([np.histogram(tokens.times[tokens.unit_index == u], bins)[0] for u in range(6)], axis=1)
    out = np.stack([falcon.predict(c[None])[0] for c in counts])
    assert out.shape == (len(counts), 2)
    np.testing.assert_allclose(out[:19], [[1.0, -1.0]] * 19)  # before a full window: the training mean
    # the same as offline causal decoding of the counts' spikes, spread evenly over their bins
    spread = [(b0 + (j + 0.5) / n * 0.05, u) for k, b0 in enumerate(bins[:-1]) for u in range(6)
              for n in [counts[k, u]] for j in range(n)]  # fmt: skip
    spread.sort(key=lambda s: s[0])
    times, units = np.array([s[0] for s in spread]), np.array([s[1] for s in spread])
    offline = model.predict_segment(SpikeTokens(times, units, tokens.unit_ids, "s", 0.0, 3.0), bins[20:], "s")
    np.testing.assert_allclose(out[19:], offline, atol=1e-5)
    assert falcon.normalized_latency > 0
    falcon.reset()
    assert np.allclose(falcon.predict(counts[0]), [1.0, -1.0])  # (C,) in, (D,) out; history forgotten
    with pytest.raises(ValueError, match="batch_size must be 1"):
        falcon.set_batch_size(4)
    with pytest.raises(ValueError, match="one session"):
        falcon.predict(counts[:2])
    with pytest.raises(ValueError, match="whole numbers"):
        falcon.predict(counts[0] - 0.5)


def test_threshold_crossings_of_a_recording_streamed_chunk_by_chunk(tmp_path):
    recording, _, _ = simulate_recording(duration=4.0, num_channels=4, num_units=4, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        offline = sip.threshold_crossings(recording, progress_bar=False, n_jobs=1)
    noise = offline.get_property("noise_level")
    channels = [str(c) for c in recording.channel_ids]
    model = untrained(channels)
    stream = sip.StreamingDecoder(model, hop=0.02)
    rng = np.random.default_rng(3)
    edges = np.unique(np.concatenate([[0], rng.integers(1, recording.get_num_samples(), 60),
                                      [recording.get_num_samples()]]))  # fmt: skip
    parts = [
        sip.push_recording_chunk(stream, recording, a, b, noise_levels=noise) for a, b in zip(edges[:-1], edges[1:])
    ]
    times = np.concatenate([p.times for p in parts])
    values = np.concatenate([p.values for p in parts])
    tokens = sorting_to_tokens(offline, "s")[0]
    assert tokens.num_spikes > 20
    np.testing.assert_allclose(values, model.predict_segment(tokens, times, "s"), atol=1e-5)
    assert np.isfinite(values[times >= 1.0]).all()
