"""Fast CPU attention kernels for POYO, behind one boundary.

On a CPU, PyTorch's attention materialises every weight and keeps a float dropout mask for
backward, and fresh allocations above 32 MiB page-fault on every call. These kernels avoid that:
dropout masks drawn eight bytes per random word (:func:`keep_mask`), attention whose backward
recomputes the weights (:class:`_DropoutAttention`), and encoder attention that gathers, turns
and attends a group of windows at a time (:class:`_GatheredAttention`, :func:`gathered_attention`).

:mod:`.layers` calls them only where :func:`applies` says so (CPU tensors, and not switched off
with :func:`use_reference_attention`); the plain autograd + ``scaled_dot_product_attention``
path in :mod:`.layers` is the reference they are tested against, and what runs on CUDA.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .rotary import apply_rotary

_ENABLED = True


def applies(x: Tensor) -> bool:
    """Whether the CPU kernels handle this tensor (a CPU tensor, kernels not switched off)."""
    return _ENABLED and not x.is_cuda


@contextlib.contextmanager
def use_reference_attention():
    """Run the plain reference path on the CPU too (for tests and comparisons)."""
    global _ENABLED
    previous, _ENABLED = _ENABLED, False
    try:
        yield
    finally:
        _ENABLED = previous


def keep_mask(shape: tuple, p: float, device, generator: torch.Generator | None = None) -> tuple[Tensor, float]:
    """Which elements dropout keeps, as a uint8 tensor of ones and zeros, and the
    probability of keeping one.

    ``torch.bernoulli`` draws one random number per element, which on a CPU costs more
    than POYO's attention itself. Here one 64-bit draw gives eight random bytes, each kept
    when it is at least ``p * 256`` rounded. Multiplying by a uint8 mask is several times
    faster than filling through a bool one.
    """
    n = math.prod(shape)
    # the full 64-bit range: random_() alone leaves the top bit of each word zero
    words = torch.empty((n + 7) // 8, dtype=torch.int64, device=device).random_(-(2**63), None, generator=generator)
    random_bytes = words.view(torch.uint8)[:n].view(shape)
    return (random_bytes >= _drop_threshold(p)).view(torch.uint8), keep_probability(p)


def _drop_threshold(p: float) -> int:
    if not 0 <= p < 1:
        raise ValueError(f"A dropout probability must be in [0, 1), got {p}.")
    return min(255, round(p * 256))


def keep_probability(p: float) -> float:
    """1 - p, with p rounded to a multiple of 1/256 as :func:`keep_mask` draws it."""
    return 1.0 - _drop_threshold(p) / 256


def batch_slices(batch_size: int, bytes_per_item: int, budget: int) -> list[slice]:
    """Consecutive slices of a batch holding at most ``budget`` bytes each (one item at least)."""
    step = max(1, budget // max(1, bytes_per_item))
    return [slice(i, i + step) for i in range(0, batch_size, step)]


def key_bias(mask: Tensor | None) -> Tensor | None:
    """(B, Nk) mask, True where a key is real -> (B, 1, 1, Nk) scores bias, 0 or -inf
    (adding it is several times faster than a masked fill of the scores)."""
    if mask is None:
        return None
    bias = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device).masked_fill_(~mask, float("-inf"))
    return bias[:, None, None, :]


def _attention_weights(q: Tensor, k: Tensor, bias: Tensor | None) -> Tensor:
    """softmax(q k^T / sqrt(Dh) + bias)."""
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if bias is not None:
        scores.add_(bias)
    return scores.softmax(dim=-1)


def _attend(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, p: float, generator) -> Tensor:
    """Attention with dropout on the weights, before the 1 / (1 - p) scaling."""
    weights = _attention_weights(q, k, bias)
    if p > 0:
        weights.mul_(keep_mask(weights.shape, p, q.device, generator)[0])
    return weights @ v


def _attend_backward(q, k, v, bias, out, grad_out, p, generator) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of q, k and v for :func:`_attend`'s scaled output ``out``: the weights
    are recomputed and the same dropout mask redrawn from ``generator``."""
    weights = _attention_weights(q, k, bias)
    keep = keep_mask(weights.shape, p, q.device, generator)[0] if p > 0 else None
    grad_kept = grad_out / keep_probability(p)  # the gradient reaching kept weights
    kept = weights if keep is None else weights * keep
    grad_v = kept.transpose(-2, -1) @ grad_kept
    del kept
    grad_weights = grad_kept @ v.transpose(-2, -1)
    if keep is not None:
        grad_weights.mul_(keep)
    row = (grad_out * out).sum(dim=-1, keepdim=True)  # = sum_j weights_ij * grad_weights_ij
    grad_scores = grad_weights.sub_(row).mul_(weights)
    del weights
    scale = q.shape[-1] ** -0.5
    return (grad_scores @ k).mul_(scale), (grad_scores.transpose(-2, -1) @ q).mul_(scale), grad_v


def _slice(t: Tensor | None, b: slice) -> Tensor | None:
    return None if t is None else t[b]


class _DropoutAttention(torch.autograd.Function):
    """Attention with dropout that keeps neither the weights nor the mask for backward.

    Forward saves q, k, v, the output and the seed of the dropout mask; backward
    recomputes the weights and redraws the same mask. This trades one extra q k^T
    product for the two (B, H, Nq, Nk) tensors that would otherwise stay in memory. Both
    passes run over slices of the batch, so no more than ``CHUNK_BYTES`` of weights exist
    at once, and the 1 / (1 - p) scaling is applied to the small (.., Dh) tensors.
    """

    CHUNK_BYTES = 32 * 2**20

    @staticmethod
    def _slices(q: Tensor, k: Tensor) -> list[slice]:
        return batch_slices(q.shape[0], q.shape[1] * q.shape[2] * k.shape[2] * 4, _DropoutAttention.CHUNK_BYTES)

    @staticmethod
    def forward(ctx, q, k, v, bias, p, seed):
        generator = torch.Generator(q.device).manual_seed(seed)
        out = q.new_empty(q.shape[:-1] + v.shape[-1:])
        for b in _DropoutAttention._slices(q, k):
            out[b] = _attend(q[b], k[b], v[b], _slice(bias, b), p, generator)
        out.div_(keep_probability(p))
        ctx.save_for_backward(q, k, v, out, bias)
        ctx.p, ctx.seed = p, seed
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, bias = ctx.saved_tensors
        generator = torch.Generator(q.device).manual_seed(ctx.seed)
        grad_q, grad_k, grad_v = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        for b in _DropoutAttention._slices(q, k):
            grad_q[b], grad_k[b], grad_v[b] = _attend_backward(
                q[b], k[b], v[b], _slice(bias, b), out[b], grad_out[b], ctx.p, generator
            )
        return grad_q, grad_k, grad_v, None, None, None


def _head_major_rows(index: Tensor, groups: int, num_rows: int) -> Tensor:
    """(B, N) row indices -> (B, G, N) indices into the (G K, Dh) head-major table."""
    offsets = torch.arange(groups, device=index.device)[:, None] * num_rows
    return index[:, None, :] + offsets


def gather_heads(table: Tensor, index: Tensor, groups: int) -> Tensor:
    """Rows of a (K, G Dh) ``table`` picked by (B, N) ``index``, laid out (B, G, N, Dh).

    One ``index_select`` straight into the layout attention reads; gathering (B, N, G Dh)
    and transposing would leave each head strided, which makes rotating it in place
    several times slower.
    """
    num_rows = table.shape[0]
    head_major = table.unflatten(-1, (groups, -1)).transpose(0, 1).reshape(groups * num_rows, -1)
    rows = _head_major_rows(index, groups, num_rows).flatten()
    return head_major.index_select(0, rows).view(*index.shape[:1], groups, index.shape[1], -1)


def window_groups(
    mask: Tensor | None, shape: tuple[int, int], bytes_per_token: int, budget: int, device
) -> list[tuple[Tensor, int]]:
    """Windows to attend to a few at a time, as (window indices, tokens) groups.

    A window's length runs to its last real token (``mask``: (B, Nk), True where real).
    Windows are taken longest first, each group holds at most ``budget`` bytes and is cut
    after its longest window's last token, so the padding of a batch (15-40 % of the
    tokens on real recordings) is hardly computed at all.
    """
    batch_size, num_tokens = shape
    if mask is None:
        lengths = torch.full((batch_size,), num_tokens)
    else:
        positions = torch.arange(1, num_tokens + 1, device=mask.device)
        lengths = (mask * positions).amax(-1).clamp_(min=1).cpu()
    order = torch.argsort(lengths, descending=True, stable=True)
    groups, start = [], 0
    while start < batch_size:
        length = int(lengths[order[start]])
        step = max(1, budget // (length * bytes_per_token))
        groups.append((order[start : start + step].to(device), length))
        start += step
    return groups


def _group_mask(mask: Tensor | None, windows: Tensor, length: int) -> Tensor | None:
    """A group's (b, length) key mask, or None where every key is real."""
    if mask is None:
        return None
    group = mask[windows, :length]
    return None if bool(group.all()) else group


def _rotated_keys_values(table: Tensor, index: Tensor, phasors: Tensor, heads: int, rotate_value: bool):
    """Keys and values (each (B, H, N, Dh)) of the (B, N) ``index`` rows of a (K, 2 H Dh)
    table, turned by the tokens' (B, N, P) phasors (fresh tensors, so in place)."""
    k, v = gather_heads(table, index, 2 * heads).chunk(2, dim=1)
    k = apply_rotary(k, phasors, inplace=True)
    return k, apply_rotary(v, phasors, inplace=True) if rotate_value else v


class _GatheredAttention(torch.autograd.Function):
    """Attention onto keys and values that are rows of a small table, gathered for each
    token and turned by its time: POYO's encoder, where a token's content is its unit and
    type alone.

    Both passes run over groups of windows (:func:`window_groups`, ``CHUNK_BYTES`` of
    weights, keys and values at a time) and gather each group's keys and values afresh: a
    batch's keys and values, the largest tensors of a training step, never exist whole,
    and only the table, the indices and the phasors are kept for backward, which adds each
    token's gradient back onto its table row. Dropout is as in :class:`_DropoutAttention`.
    """

    CHUNK_BYTES = 8 * 2**20

    @staticmethod
    def groups(q: Tensor, mask: Tensor | None, num_tokens: int) -> list[tuple[Tensor, int]]:
        heads, num_queries, head_dim = q.shape[1:]
        per_token = heads * (num_queries + 2 * head_dim) * 4  # weights, keys, values
        budget = _GatheredAttention.CHUNK_BYTES
        return window_groups(mask, (q.shape[0], num_tokens), per_token, budget, q.device)

    @staticmethod
    def forward(ctx, q, table, index, phasors, mask, rotate_value, p, seed):
        heads = q.shape[1]
        generator = torch.Generator(q.device).manual_seed(seed)
        groups = _GatheredAttention.groups(q, mask, index.shape[1])
        out = torch.empty_like(q)
        for windows, n in groups:
            k, v = _rotated_keys_values(table, index[windows, :n], phasors[windows, :n], heads, rotate_value)
            out[windows] = _attend(q[windows], k, v, key_bias(_group_mask(mask, windows, n)), p, generator)
        out.div_(keep_probability(p))
        ctx.save_for_backward(q, table, index, phasors, mask, out)
        ctx.groups, ctx.rotate_value, ctx.p, ctx.seed = groups, rotate_value, p, seed
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, table, index, phasors, mask, out = ctx.saved_tensors
        heads, num_rows = q.shape[1], table.shape[0]
        generator = torch.Generator(q.device).manual_seed(ctx.seed)
        grad_q = torch.empty_like(q)
        grad_rows = table.new_zeros(2 * heads * num_rows, table.shape[1] // (2 * heads))  # head-major
        for windows, n in ctx.groups:
            group_index, group_phasors = index[windows, :n], phasors[windows, :n]
            k, v = _rotated_keys_values(table, group_index, group_phasors, heads, ctx.rotate_value)
            bias = key_bias(_group_mask(mask, windows, n))
            grad_q[windows], grad_k, grad_v = _attend_backward(
                q[windows], k, v, bias, out[windows], grad_out[windows], ctx.p, generator
            )
            del k, v
            grad_k = apply_rotary(grad_k, group_phasors, inverse=True, inplace=True)  # rotations are orthogonal
            if ctx.rotate_value:
                grad_v = apply_rotary(grad_v, group_phasors, inverse=True, inplace=True)
            rows = _head_major_rows(group_index, 2 * heads, num_rows)
            grad_rows.index_add_(0, rows[:, :heads].flatten(), grad_k.flatten(0, 2))
            grad_rows.index_add_(0, rows[:, heads:].flatten(), grad_v.flatten(0, 2))
        grad_table = grad_rows.view(2 * heads, num_rows, -1).transpose(0, 1).reshape(table.shape)
        return grad_q, grad_table, None, None, None, None, None, None


#: At inference, keys and values are gathered for at most this many bytes of windows at a
#: time (glibc gives blocks over 32 MiB fresh pages on every call).
GATHER_CHUNK_BYTES = 8 * 2**20


def dropout_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, p: float) -> Tensor:
    """softmax(q k^T / sqrt(Dh)) v with dropout on the weights; (B, H, N, Dh) in and out,
    ``mask`` (B, Nk) True where a key is real. Nothing of size (B, H, Nq, Nk) is kept for backward."""
    seed = int(torch.randint(0, 2**62, (1,)))  # from the global generator, so runs are reproducible
    return _DropoutAttention.apply(q, k, v, key_bias(mask), p, seed)


def gathered_attention(q, table, index, q_rotary, kv_rotary, mask, dropout, rotate_value) -> Tensor:
    """The CPU path of :func:`.layers.gathered_rotary_attention`: keys and values gathered for a
    group of windows at a time, cut after the group's last real token (:func:`window_groups`).

    In training see :class:`_GatheredAttention`; at inference, gathering a whole batch would be
    fresh memory on every call, whose page faults cost more than the attention itself.
    Returns (B, Nq, H Dh).
    """
    heads = q.shape[1]
    if torch.is_grad_enabled():
        q = apply_rotary(q, q_rotary)
        seed = int(torch.randint(0, 2**62, (1,))) if dropout > 0 else 0
        out = _GatheredAttention.apply(q, table, index, kv_rotary, mask, rotate_value, dropout, seed)
        if rotate_value:
            out = apply_rotary(out, q_rotary, inverse=True)
        return out.transpose(1, 2).flatten(-2)
    q = apply_rotary(q, q_rotary, inplace=True)  # a fresh projection
    out = torch.empty_like(q)
    per_token = 2 * heads * q.shape[-1] * 4  # keys and values
    for windows, n in window_groups(mask, index.shape, per_token, GATHER_CHUNK_BYTES, q.device):
        k, v = _rotated_keys_values(table, index[windows, :n], kv_rotary[windows, :n], heads, rotate_value)
        group_mask = _group_mask(mask, windows, n)
        key_mask = None if group_mask is None else group_mask[:, None, None, :]
        out[windows] = F.scaled_dot_product_attention(q[windows], k, v, attn_mask=key_mask)
    if rotate_value:
        out = apply_rotary(out, q_rotary, inverse=True, inplace=True)
    return out.transpose(1, 2).flatten(-2)


def byte_dropout(x: Tensor, p: float) -> Tensor:
    """Dropout through a :func:`keep_mask` (``p`` rounded to a multiple of 1/256)."""
    keep, keep_prob = keep_mask(x.shape, p, x.device)
    return x.mul(keep).div_(keep_prob)
