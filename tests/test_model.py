import json

import numpy as np
import pytest
import torch

import spikeinterface_poyo as sip
from spikeinterface_poyo.io.models import WEIGHTS_FILE
from spikeinterface_poyo.models.poyo import POYO, PRESETS


def test_paper_configurations_have_their_parameter_counts():
    for preset, millions in [("poyo_1.3M", 1.3), ("poyo_11.8M", 11.8)]:
        model = POYO.from_preset(preset, dim_out=2)
        model.unit_emb.extend_vocab([f"u{i}" for i in range(100)])
        model.session_emb.extend_vocab(["s"])
        assert model.num_parameters() / 1e6 == pytest.approx(millions, rel=0.06), preset


def _tiny_model(dim_out: int) -> POYO:
    """A seeded `tiny` POYO in eval mode with units a, b, c and session s."""
    torch.manual_seed(0)
    model = POYO.from_preset("tiny", dim_out=dim_out).eval()
    model.unit_emb.extend_vocab(["a", "b", "c"])
    model.session_emb.extend_vocab(["s"])
    return model


def test_forward_shapes_and_padding_invariance():
    model = _tiny_model(dim_out=3)
    latent_index, latent_times = model.latent_tokens(1)
    base = dict(
        input_unit_index=torch.tensor([[1, 2, 3]]),
        input_timestamps=torch.tensor([[0.1, 0.4, 0.9]]),
        input_token_type=torch.zeros(1, 3, dtype=torch.long),
        input_mask=torch.ones(1, 3, dtype=torch.bool),
        latent_index=latent_index,
        latent_timestamps=latent_times,
        session_index=torch.tensor([1]),
        output_timestamps=torch.tensor([[0.2, 0.5]]),
    )
    out = model(**base)
    assert out.shape == (1, 2, 3)
    padded = dict(base)
    padded["input_unit_index"] = torch.tensor([[1, 2, 3, 0, 0]])
    padded["input_timestamps"] = torch.tensor([[0.1, 0.4, 0.9, 0.3, 0.0]])
    padded["input_token_type"] = torch.zeros(1, 5, dtype=torch.long)
    padded["input_mask"] = torch.tensor([[True, True, True, False, False]])
    torch.testing.assert_close(model(**padded), out)


def test_inference_in_slices_of_windows_equals_the_training_path(monkeypatch):
    from spikeinterface_poyo.models.poyo import cpu_kernels as poyo_nn

    model = _tiny_model(dim_out=2)
    latent_index, latent_times = model.latent_tokens(3)
    inputs = dict(
        input_unit_index=torch.randint(1, 4, (3, 20)),
        input_timestamps=torch.rand(3, 20),
        input_token_type=torch.randint(0, 3, (3, 20)),
        input_mask=torch.rand(3, 20) > 0.2,
        latent_index=latent_index,
        latent_timestamps=latent_times,
        session_index=torch.ones(3, dtype=torch.long),
        output_timestamps=torch.rand(3, 5),
    )
    expected = model(**inputs)  # with autograd: one gather for the whole batch
    monkeypatch.setattr(poyo_nn, "GATHER_CHUNK_BYTES", 1)  # one window at a time
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs), expected.detach())


def test_phasors_of_fast_rotations_are_exact_after_removing_whole_turns():
    from spikeinterface_poyo.models.poyo.rotary import RotaryTimeEmbedding

    rot = RotaryTimeEmbedding(64, 32, 1e-4, 4.0)
    times = torch.rand(5000) * 6.0  # windows up to 6 s: angles up to ~4e5 rad
    angles = (times[:, None] * rot.omega).double()  # the same float32 angles, turned in float64
    expected = torch.complex(angles.cos(), angles.sin())
    phasors = rot(times)
    assert phasors.dtype == torch.complex64
    assert float((phasors.to(torch.complex128) - expected).abs().max()) < 5e-7


def test_rotary_attention_depends_on_relative_time_only():
    torch.manual_seed(0)
    model = POYO.from_preset("tiny", dim_out=1).eval()
    model.unit_emb.extend_vocab(["a", "b"])
    model.session_emb.extend_vocab(["s"])
    rot = model.rotary_emb
    x = torch.randn(1, 1, 4, 16)
    y = torch.randn(1, 1, 4, 16)
    from spikeinterface_poyo.models.poyo.rotary import apply_rotary

    t = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    scores = apply_rotary(x, rot(t)) @ apply_rotary(y, rot(t)).transpose(-1, -2)
    shifted = apply_rotary(x, rot(t + 0.37)) @ apply_rotary(y, rot(t + 0.37)).transpose(-1, -2)
    # float32 angles of the fastest (0.1 ms) rotations carry ~1e-3 rounding at these times
    torch.testing.assert_close(scores, shifted, atol=1e-2, rtol=1e-2)
    assert not torch.allclose(scores, x @ y.transpose(-1, -2), atol=1e-1)


def test_save_load_round_trip_and_tamper_detection(tiny_model, simulated, tmp_path):
    sorting, behavior = simulated
    path = sip.save_model(tiny_model, tmp_path / "decoder")
    loaded = sip.load_model(path, device="cpu")
    assert loaded.meta == json.loads(json.dumps(tiny_model.meta))
    assert loaded.unit_emb.vocab == tiny_model.unit_emb.vocab
    t = behavior.timestamps[:200]
    a = sip.decode_behavior(sorting, tiny_model, timestamps=t, progress_bar=False)
    b = sip.decode_behavior(sorting, loaded, timestamps=t, progress_bar=False)
    np.testing.assert_allclose(a.values, b.values, atol=1e-5)

    weights = path / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        sip.load_model(path)


def test_mismatched_checkpoint_is_refused(tiny_model, tmp_path):
    path = sip.save_model(tiny_model, tmp_path / "decoder")
    config = json.loads((path / "config.json").read_text())
    config["config"]["architecture"]["dim_out"] = 5  # claims 5 outputs, weights have 2
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="readout"):
        sip.load_model(path)


def test_future_schema_says_what_to_do(tiny_model, tmp_path):
    path = sip.save_model(tiny_model, tmp_path / "decoder")
    config = json.loads((path / "config.json").read_text())
    config["schema_version"] = 99
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="schema"):
        sip.load_model(path)


def test_presets_are_all_buildable():
    for name in PRESETS:
        assert POYO.from_preset(name, dim_out=2).config["dim_out"] == 2


def test_attention_dropout_mask_drops_the_rounded_fraction_uniformly():
    from spikeinterface_poyo.models.poyo.cpu_kernels import keep_mask

    torch.manual_seed(0)
    keep, keep_prob = keep_mask((64, 4, 32, 501), 0.2, "cpu")
    assert keep.dtype == torch.uint8 and keep.shape == (64, 4, 32, 501)
    assert set(keep.unique().tolist()) == {0, 1}
    assert keep_prob == 1 - 51 / 256
    assert keep.float().mean().item() == pytest.approx(1 - 51 / 256, abs=2e-3)
    with pytest.raises(ValueError, match="dropout probability"):
        keep_mask((3,), 1.0, "cpu")


def test_attention_with_dropout_is_unbiased_and_exact_without_dropout():
    from spikeinterface_poyo.models.poyo.cpu_kernels import dropout_attention as attention_with_dropout

    torch.manual_seed(1)
    q, k, v = torch.randn(2, 2, 5, 8), torch.randn(2, 2, 40, 8), torch.randn(2, 2, 40, 8)
    mask = torch.rand(2, 40) > 0.2
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
    torch.testing.assert_close(attention_with_dropout(q, k, v, mask, 0.001), expected)  # rounds to no dropout
    average = torch.stack([attention_with_dropout(q, k, v, mask, 0.2) for _ in range(3000)]).mean(0)
    torch.testing.assert_close(average, expected, atol=0.03, rtol=0)


def test_rotating_in_place_gives_the_same_values_and_gradients():
    from spikeinterface_poyo.models.poyo.rotary import RotaryTimeEmbedding, apply_rotary

    rot = RotaryTimeEmbedding(16, 8, 1e-3, 2.0)
    phasors = rot(torch.rand(3, 7))
    base = torch.randn(3, 7, 2 * 16, requires_grad=True)
    results = []
    for inplace in (False, True):
        x = (base * 1.0).unflatten(-1, (2, 16)).transpose(1, 2)  # a fresh, strided (B, H, N, Dh) view
        y = apply_rotary(x, phasors, inplace=inplace)
        (grad,) = torch.autograd.grad((y * torch.arange(16.0)).sum(), base)
        results.append((y.detach().clone(), grad))
    torch.testing.assert_close(results[1][0], results[0][0])
    torch.testing.assert_close(results[1][1], results[0][1])
    torch.testing.assert_close(results[0][0][..., 8:], (base * 1.0).unflatten(-1, (2, 16)).transpose(1, 2)[..., 8:])


def test_dropout_attention_gradients_match_autograd_of_the_same_mask(monkeypatch):
    from spikeinterface_poyo.models.poyo.cpu_kernels import _DropoutAttention, keep_mask, key_bias

    torch.manual_seed(2)
    q, k, v = (torch.randn(2, 2, n, 8, dtype=torch.float64, requires_grad=True) for n in (5, 30, 30))
    mask = torch.rand(2, 30) > 0.2
    monkeypatch.setattr(_DropoutAttention, "CHUNK_BYTES", 2 * 5 * 30 * 4)  # one window per slice
    out = _DropoutAttention.apply(q, k, v, key_bias(mask).double(), 0.3, 1234)
    generator = torch.Generator().manual_seed(1234)
    keep = torch.cat([keep_mask((1, 2, 5, 30), 0.3, "cpu", generator)[0] for _ in range(2)])
    scores = (q * 8**-0.5) @ k.transpose(-2, -1)
    weights = scores.masked_fill(~mask[:, None, None, :], float("-inf")).softmax(-1)
    reference = (weights * keep / (1 - 77 / 256)) @ v
    torch.testing.assert_close(out, reference)
    grad = torch.randn_like(out)
    ours = torch.autograd.grad(out, (q, k, v), grad)
    expected = torch.autograd.grad(reference, (q, k, v), grad)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b)


def test_window_groups_cover_every_window_once_and_cut_padding():
    from spikeinterface_poyo.models.poyo.cpu_kernels import window_groups

    lengths = torch.tensor([5, 40, 12, 40, 1, 30])
    mask = torch.arange(40) < lengths[:, None]
    mask[2, 3] = False  # a hole before the last real token does not shorten the window
    groups = window_groups(mask, (6, 40), bytes_per_token=1, budget=60, device="cpu")
    covered = torch.cat([windows for windows, _ in groups]).sort().values
    assert covered.tolist() == list(range(6))
    for windows, n in groups:
        assert n == int(lengths[windows].max())  # cut after the group's last real token
        assert len(windows) == max(1, 60 // n) or windows is groups[-1][0]
    assert [n for _, n in groups] == sorted((n for _, n in groups), reverse=True)
    assert window_groups(None, (3, 7), 1, 100, "cpu")[0][1] == 7


@pytest.mark.parametrize("rotate_value", [True, False])
def test_gathered_attention_matches_autograd_of_gather_rotate_attend(monkeypatch, rotate_value):
    from spikeinterface_poyo.models.poyo.cpu_kernels import _GatheredAttention, keep_mask, window_groups
    from spikeinterface_poyo.models.poyo.layers import gathered_rotary_attention, split_heads
    from spikeinterface_poyo.models.poyo.rotary import RotaryTimeEmbedding, apply_rotary

    torch.manual_seed(4)
    heads, dim_head, num_rows = 2, 8, 6
    q = torch.randn(3, heads, 5, dim_head, requires_grad=True)
    table = torch.randn(num_rows, 2 * heads * dim_head, requires_grad=True)
    index = torch.randint(0, num_rows, (3, 40))
    mask = torch.rand(3, 40) > 0.2
    rot = RotaryTimeEmbedding(dim_head, dim_head // 2, 1e-2, 2.0)
    times_q, times_kv = torch.rand(3, 5), torch.rand(3, 40)
    q_rot, kv_rot = rot(times_q), rot(times_kv, turning_only=True)
    monkeypatch.setattr(_GatheredAttention, "CHUNK_BYTES", 1)  # one window per slice
    torch.manual_seed(9)
    out = gathered_rotary_attention(q, table, index, q_rot, kv_rot, mask, 0.25, rotate_value)

    torch.manual_seed(9)
    seed = int(torch.randint(0, 2**62, (1,)))
    generator = torch.Generator().manual_seed(seed)
    keep = torch.ones(3, heads, 5, 40, dtype=torch.uint8)
    for windows, n in window_groups(mask, (3, 40), 1, 1, "cpu"):  # one window a group, longest first
        keep[windows, ..., :n] = keep_mask((1, heads, 5, n), 0.25, "cpu", generator)[0]
    k, v = (split_heads(t, heads) for t in torch.nn.functional.embedding(index, table).chunk(2, dim=-1))
    qr, k = apply_rotary(q, q_rot), apply_rotary(k, kv_rot)
    v = apply_rotary(v, kv_rot) if rotate_value else v
    weights = ((qr * dim_head**-0.5) @ k.transpose(-2, -1)).masked_fill(~mask[:, None, None, :], float("-inf"))
    expected = (weights.softmax(-1) * keep / (1 - 64 / 256)) @ v
    if rotate_value:
        expected = apply_rotary(expected, q_rot, inverse=True)
    expected = expected.transpose(1, 2).flatten(-2)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (q, table), grad), torch.autograd.grad(expected, (q, table), grad)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_saved_model_is_readable_by_others(tiny_model, tmp_path):
    import os
    import stat

    previous = os.umask(0o022)
    try:
        folder = sip.save_model(tiny_model, tmp_path / "shared_model")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    for file in folder.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o644, file.name


def test_shipped_model_loads_and_names_its_training_data():
    assert "poyo_small_sim_hc" in sip.available_models()
    model = sip.load_model("poyo_small_sim_hc", device="cpu")
    sessions = model.meta["training"]["sessions"]
    assert {"linear_track", "w_maze"} <= set(sessions) and not any("m1" in s for s in sessions)
    assert model.readout.out_features == 2


def test_byte_dropout_keeps_the_mean_and_is_identity_in_eval():
    from spikeinterface_poyo.models.poyo.layers import ByteDropout

    torch.manual_seed(3)
    layer = ByteDropout(0.4)
    x = torch.ones(200_000)
    y = layer(x)
    assert ((y == 0).float().mean().item()) == pytest.approx(102 / 256, abs=5e-3)
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)
    layer.eval()
    assert layer(x) is x
