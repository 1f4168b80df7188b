"""Building blocks of POYO: a growable vocabulary embedding, rotary time embeddings
and the rotary cross/self-attention layers.

Parameter and buffer names follow torch_brain so its state dicts load unchanged.
Shapes: B batch, N tokens, H heads, Dh head dim, D model dim.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class VocabEmbedding(nn.Module):
    """Embedding table whose rows are named by a growable vocabulary.

    Row 0 is the reserved padding word ``"NA"`` (zeros, no gradient), as in
    torch_brain's ``InfiniteVocabEmbedding``. The vocabulary is a plain list kept
    beside the weight, so checkpoints store it as JSON rather than pickle.

    Parameters
    ----------
    embedding_dim : int
        Width of each embedding row.
    init_scale : float, default: 0.02
        Standard deviation of the normal initialisation.
    """

    PAD = "NA"

    def __init__(self, embedding_dim: int, init_scale: float = 0.02):
        super().__init__()
        self.embedding_dim = embedding_dim
        self.init_scale = init_scale
        self.vocab: list[str] = [self.PAD]
        self._index: dict[str, int] = {self.PAD: 0}
        self.weight = nn.Parameter(torch.zeros(1, embedding_dim))

    def __len__(self) -> int:
        return len(self.vocab)

    def extend_vocab(self, words, exist_ok: bool = False) -> list[str]:
        """Append new words with fresh random rows; return the words added."""
        words = [str(w) for w in words]
        if len(set(words)) != len(words):
            raise ValueError("The vocabulary to add contains duplicate words.")
        known = [w for w in words if w in self._index]
        if known and not exist_ok:
            raise ValueError(
                f"{len(known)} of {len(words)} words are already in the vocabulary "
                f"(e.g. {known[0]!r}); pass exist_ok=True to skip them."
            )
        new = [w for w in words if w not in self._index]
        if not new:
            return []
        rows = torch.empty(len(new), self.embedding_dim, device=self.weight.device)
        nn.init.normal_(rows, std=self.init_scale)
        with torch.no_grad():
            self.weight = nn.Parameter(torch.cat([self.weight.detach(), rows.to(self.weight.dtype)]))
        for w in new:
            self._index[w] = len(self.vocab)
            self.vocab.append(w)
        return new

    def set_vocab(self, vocab: list[str]) -> None:
        """Replace the vocabulary (``vocab[0]`` must be ``"NA"``) and resize the weight."""
        vocab = [str(w) for w in vocab]
        if not vocab or vocab[0] != self.PAD:
            raise ValueError(f"A vocabulary must start with the padding word {self.PAD!r}.")
        if len(set(vocab)) != len(vocab):
            raise ValueError("The vocabulary contains duplicate words.")
        self.vocab = vocab
        self._index = {w: i for i, w in enumerate(vocab)}
        if self.weight.shape[0] != len(vocab):
            self.weight = nn.Parameter(torch.zeros(len(vocab), self.embedding_dim, device=self.weight.device))

    def tokenizer(self, words):
        """Index of one word, or a list of indices for a list of words."""
        if isinstance(words, str):
            return self._lookup(words)
        return [self._lookup(str(w)) for w in words]

    def _lookup(self, word: str) -> int:
        try:
            return self._index[word]
        except KeyError:
            raise KeyError(
                f"{word!r} is not in this model's vocabulary of {len(self.vocab) - 1} words; "
                "adapt the model to new units or sessions with sip.finetune."
            ) from None

    def forward(self, index: Tensor) -> Tensor:
        return F.embedding(index, self.weight, padding_idx=0)

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}, num_embeddings={len(self.vocab)}"


def logspace_periods(num: int, t_min: float, t_max: float) -> Tensor:
    """``num`` periods spaced logarithmically from ``t_min`` to ``t_max`` (inclusive)."""
    if not 0 < t_min < t_max:
        raise ValueError(f"Need 0 < t_min < t_max, got t_min={t_min}, t_max={t_max}.")
    frac = torch.linspace(0.0, 1.0, num, dtype=torch.float32)
    return torch.exp(torch.lerp(torch.tensor(t_min).log(), torch.tensor(t_max).log(), frac))


class RotaryTimeEmbedding(nn.Module):
    """Rotary embedding of continuous time (RoFormer's RoPE with time for position).

    Channels are rotated in adjacent pairs; only the first ``rotate_dim`` channels of
    each head turn with time, the rest carry content alone. The embedding is returned
    as unit phasors ``exp(i * omega * t)``, one per channel pair, so that rotating is a
    single complex multiplication.

    Parameters
    ----------
    head_dim : int
        Dimension of one attention head, Dh.
    rotate_dim : int
        Number of channels to rotate (even, at most ``head_dim``).
    t_min, t_max : float
        Shortest and longest period, in seconds.
    """

    omega: Tensor

    def __init__(self, head_dim: int, rotate_dim: int, t_min: float, t_max: float):
        super().__init__()
        if rotate_dim % 2 or rotate_dim > head_dim:
            raise ValueError("rotate_dim must be even and no larger than head_dim.")
        omega = torch.zeros(head_dim // 2)  # zero for the pairs that do not turn (torch_brain's layout)
        omega[: rotate_dim // 2] = 2 * math.pi / logspace_periods(rotate_dim // 2, t_min, t_max)
        self.register_buffer("omega", omega)
        self.rotate_dim = rotate_dim

    @torch.no_grad()
    def forward(self, timestamps: Tensor, turning_only: bool = False) -> Tensor:
        """(...,) seconds -> (..., Dh / 2) complex64 phasors (1 for the pairs that do not turn).

        With ``turning_only``, only the ``rotate_dim / 2`` phasors of the pairs that turn.
        """
        omega = self.omega[: self.rotate_dim // 2] if turning_only else self.omega
        angles = reduce_angles(timestamps.float()[..., None] * omega)
        return torch.complex(angles.cos(), angles.sin())  # torch.polar's cos and sin are not vectorised


def _split_float(x: float, bits: int) -> float:
    """``x`` truncated to ``bits`` significant bits."""
    mantissa, exponent = math.frexp(x)
    return math.ldexp(math.floor(mantissa * 2**bits) / 2**bits, exponent)


# 2 pi in three parts of 8, 8 and 24 bits: a whole number of turns below 2**16 (6.5 s at the
# 0.1 ms period) times either of the first two is exact in float32 (Cody and Waite's reduction)
_TURN_1 = _split_float(2 * math.pi, 8)
_TURN_2 = _split_float(2 * math.pi - _TURN_1, 8)
_TURN_3 = 2 * math.pi - _TURN_1 - _TURN_2


def reduce_angles(angles: Tensor) -> Tensor:
    """Float32 ``angles`` less their whole turns, in place: the same cos and sin (within
    2e-7), but the fast-rotating pairs' angles (up to ~1e5 rad) no longer send cos and sin
    down their slow path for large arguments."""
    turns = angles.mul(1 / (2 * math.pi)).round_()
    return angles.sub_(turns, alpha=_TURN_1).sub_(turns, alpha=_TURN_2).sub_(turns, alpha=_TURN_3)


def apply_rotary(x: Tensor, phasors: Tensor, inverse: bool = False, inplace: bool = False) -> Tensor:
    """Rotate the channel pairs of (B, H, N, Dh) ``x`` by (B, N, P) phasors (P <= Dh / 2).

    The first P pairs turn, the others (if any) pass through.

    ``inverse`` rotates by the opposite angle. ``inplace`` overwrites ``x`` (for inference:
    it saves a copy); out of place, all pairs go through one complex multiplication, since
    slicing the turning ones apart would cost backward more than it saves. Computed in
    float32, returned in x's dtype.
    """
    turn = (phasors.conj() if inverse else phasors)[:, None]
    pairs = x.unflatten(-1, (-1, 2))
    if inplace and x.dtype == torch.float32 and all(s % 2 == 0 for s in pairs.stride()[:-1]):
        # a view of x's strided channels, turned in place (only the pairs given phasors)
        torch.view_as_complex(pairs[..., : turn.shape[-1], :]).mul_(turn)
        return x
    if turn.shape[-1] < pairs.shape[-2]:  # pairs without a phasor do not turn
        turn = torch.cat([turn, turn.new_ones(turn.shape[:-1] + (pairs.shape[-2] - turn.shape[-1],))], dim=-1)
    turned = torch.view_as_complex(pairs.float().contiguous()) * turn
    return torch.view_as_real(turned).flatten(-2).to(x.dtype)


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


def attention_with_dropout(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, p: float) -> Tensor:
    """softmax(q k^T / sqrt(Dh)) v with dropout on the weights; (B, H, N, Dh) in and out.

    On GPUs this is ``scaled_dot_product_attention``'s own fused dropout; on CPUs, where
    that falls back to materialising and keeping every weight and a float mask, it is
    :class:`_DropoutAttention`. ``mask`` is (B, Nk), True where a key is real.
    """
    if q.is_cuda:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=_key_mask(mask), dropout_p=p)
    seed = int(torch.randint(0, 2**62, (1,)))  # from the global generator, so runs are reproducible
    return _DropoutAttention.apply(q, k, v, key_bias(mask), p, seed)


def _key_mask(mask: Tensor | None) -> Tensor | None:
    """(B, Nk) -> (B, 1, 1, Nk), the boolean mask ``scaled_dot_product_attention`` broadcasts."""
    return None if mask is None else mask[:, None, None, :]


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, N, H Dh) -> (B, H, N, Dh), a view."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


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


def gathered_rotary_attention(
    q: Tensor,
    table: Tensor,
    index: Tensor,
    q_rotary: Tensor,
    kv_rotary: Tensor,
    mask: Tensor | None,
    dropout: float,
    rotate_value: bool,
) -> Tensor:
    """:func:`rotary_attention` onto a context given as a (K, 2 H Dh) ``table`` of keys
    and values and the (B, Nk) ``index`` of each token's row.

    Keys and values are gathered for a group of windows at a time, cut after the group's
    last real token (:func:`window_groups`). At inference, gathering a whole batch would be
    fresh memory on every call, whose page faults cost more than the attention itself; in
    training, see :class:`_GatheredAttention`. GPUs gather the whole batch for training and
    use fused attention. Returns (B, Nq, H Dh).
    """
    heads = q.shape[1]
    if torch.is_grad_enabled() and q.is_cuda:
        k, v = (split_heads(t, heads) for t in F.embedding(index, table).chunk(2, dim=-1))
        return rotary_attention(q, k, v, q_rotary, kv_rotary, mask, dropout, rotate_value)
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
        out[windows] = F.scaled_dot_product_attention(q[windows], k, v, attn_mask=_key_mask(group_mask))
    if rotate_value:
        out = apply_rotary(out, q_rotary, inverse=True, inplace=True)
    return out.transpose(1, 2).flatten(-2)


def rotary_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    q_rotary: Tensor,
    kv_rotary: Tensor,
    mask: Tensor | None,
    dropout: float,
    rotate_value: bool,
) -> Tensor:
    """Multi-head attention with rotary time embeddings.

    ``q``: (B, H, Nq, Dh), ``k``/``v``: (B, H, Nk, Dh), ``mask``: (B, Nk) True where a
    key is real. With ``rotate_value`` the values carry their time too, and the output
    is rotated back by the query time, so it encodes relative time. Returns (B, Nq, H Dh).
    """
    # without autograd, the fresh projections q, k and v are rotated in place
    inplace = not torch.is_grad_enabled()
    q = apply_rotary(q, q_rotary, inplace=inplace)
    k = apply_rotary(k, kv_rotary, inplace=inplace)
    if rotate_value:
        v = apply_rotary(v, kv_rotary, inplace=inplace)
    if dropout > 0:
        out = attention_with_dropout(q, k, v, mask, dropout)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=_key_mask(mask))
    if rotate_value:
        out = apply_rotary(out, q_rotary, inverse=True, inplace=inplace)
    return out.transpose(1, 2).flatten(-2)


class RotaryCrossAttention(nn.Module):
    """Pre-norm cross-attention from queries onto a context, with rotary time.

    Parameters
    ----------
    dim : int
        Query width D (and context width unless ``context_dim`` is given).
    context_dim : int or None
        Context width.
    heads, dim_head : int
        Number and width of heads.
    dropout : float
        Attention dropout, applied in training only.
    rotate_value : bool
        Whether values are rotated too (POYO's encoder does, its decoder does not).
    """

    def __init__(
        self,
        *,
        dim: int,
        context_dim: int | None = None,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
        rotate_value: bool = False,
    ):
        super().__init__()
        inner = heads * dim_head
        context_dim = context_dim or dim
        self.heads, self.dropout, self.rotate_value = heads, dropout, rotate_value
        self.norm = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(context_dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(context_dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(
        self,
        x_query: Tensor,
        x_context: Tensor,
        query_pos_emb: Tensor,
        context_pos_emb: Tensor,
        context_mask: Tensor | None = None,
        context_index: Tensor | None = None,
    ) -> Tensor:
        """(B, Nq, D) queries attend to (B, Nk, Dc) context -> (B, Nq, D).

        With ``context_index`` (B, Nk), ``x_context`` is instead a (K, Dc) table of the
        distinct context rows: keys and values are computed once per row and gathered,
        which gives the same result when many context tokens share a row.
        """
        q = split_heads(self.to_q(self.norm(x_query)), self.heads)
        kv = self.to_kv(self.norm_context(x_context))
        dropout = self.dropout if self.training else 0.0
        if context_index is not None:
            out = gathered_rotary_attention(
                q, kv, context_index, query_pos_emb, context_pos_emb, context_mask, dropout, self.rotate_value
            )
        else:
            k, v = (split_heads(t, self.heads) for t in kv.chunk(2, dim=-1))
            out = rotary_attention(q, k, v, query_pos_emb, context_pos_emb, context_mask, dropout, self.rotate_value)
        return self.to_out(out)


class RotarySelfAttention(nn.Module):
    """Pre-norm self-attention with rotary time; arguments as :class:`RotaryCrossAttention`."""

    def __init__(
        self,
        *,
        dim: int,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
        rotate_value: bool = False,
    ):
        super().__init__()
        self.heads, self.dropout, self.rotate_value = heads, dropout, rotate_value
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim)

    def forward(self, x: Tensor, rotary_time_emb: Tensor, x_mask: Tensor | None = None) -> Tensor:
        """(B, N, D) -> (B, N, D)."""
        q, k, v = (split_heads(t, self.heads) for t in self.to_qkv(self.norm(x)).chunk(3, dim=-1))
        out = rotary_attention(
            q,
            k,
            v,
            rotary_time_emb,
            rotary_time_emb,
            x_mask,
            self.dropout if self.training else 0.0,
            self.rotate_value,
        )
        return self.to_out(out)


class ByteDropout(nn.Module):
    """``nn.Dropout`` whose mask comes from :func:`keep_mask` on CPUs (``p`` rounded to a
    multiple of 1/256); on GPUs it is ``F.dropout``."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p <= 0:
            return x
        if x.is_cuda:
            return F.dropout(x, self.p, training=True)
        keep, keep_prob = keep_mask(x.shape, self.p, x.device)
        return x.mul(keep).div_(keep_prob)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class GEGLU(nn.Module):
    """Gated GELU: split the channels in two, gate one half by GELU of the other."""

    def forward(self, x: Tensor) -> Tensor:
        x, gate = x.chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    """Linear -> GEGLU -> dropout -> linear, widening by ``mult`` inside."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.2):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, dim * mult * 2),
            GEGLU(),
            ByteDropout(dropout),
            nn.Linear(dim * mult, dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
