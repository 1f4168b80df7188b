"""Building blocks of POYO as plain ``nn.Module``s: a growable vocabulary embedding, rotary
cross- and self-attention, feed-forwards and dropout.

Parameter and buffer names follow torch_brain so its state dicts load unchanged. This is the
reference path (autograd through ``scaled_dot_product_attention``), the one that runs on CUDA;
on a CPU the attention and dropout go through :mod:`.cpu_kernels`, tested against it.
Shapes: B batch, N tokens, H heads, Dh head dim, D model dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import cpu_kernels
from .rotary import apply_rotary


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


def _key_mask(mask: Tensor | None) -> Tensor | None:
    """(B, Nk) -> (B, 1, 1, Nk), the boolean mask ``scaled_dot_product_attention`` broadcasts."""
    return None if mask is None else mask[:, None, None, :]


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, N, H Dh) -> (B, H, N, Dh), a view."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


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
    """:func:`rotary_attention` onto a context given as a (K, 2 H Dh) ``table`` of keys and values
    and the (B, Nk) ``index`` of each token's row; returns (B, Nq, H Dh).

    The reference gathers every token's key and value; on a CPU :func:`.cpu_kernels.gathered_attention`
    gathers a group of windows at a time instead.
    """
    if cpu_kernels.applies(q):
        return cpu_kernels.gathered_attention(q, table, index, q_rotary, kv_rotary, mask, dropout, rotate_value)
    k, v = (split_heads(t, q.shape[1]) for t in F.embedding(index, table).chunk(2, dim=-1))
    return rotary_attention(q, k, v, q_rotary, kv_rotary, mask, dropout, rotate_value)


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
    if dropout > 0 and cpu_kernels.applies(q):
        out = cpu_kernels.dropout_attention(q, k, v, mask, dropout)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=_key_mask(mask), dropout_p=dropout)
    if rotate_value:
        out = apply_rotary(out, q_rotary, inverse=True, inplace=inplace)
    return out.transpose(1, 2).flatten(-2)


def attention_with_lse(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """softmax(q k^T / sqrt(Dh)) v and the log-sum-exp of each query's scores, which lets the
    attention over two sets of keys be assembled from each set's (:func:`merge_attention`).
    (B, H, Nq, Dh) queries, (B, H, Nk, Dh) keys and values; returns (B, H, Nq, Dh), (B, H, Nq)."""
    if q.device.type == "cpu":  # the flash kernel behind scaled_dot_product_attention, which has it
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)
    scores = (q @ k.transpose(-1, -2)).mul_(q.shape[-1] ** -0.5)
    lse = scores.logsumexp(dim=-1)
    return scores.sub_(lse[..., None]).exp_() @ v, lse


def merge_attention(out_a: Tensor, lse_a: Tensor, out_b: Tensor, lse_b: Tensor) -> Tensor:
    """The attention over the union of two key sets, from each set's output and log-sum-exp
    (:func:`attention_with_lse`); shapes as there."""
    lse = torch.logaddexp(lse_a, lse_b)
    return out_a * (lse_a - lse).exp_()[..., None] + out_b * (lse_b - lse).exp_()[..., None]


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
    """``nn.Dropout`` whose mask comes from :func:`.cpu_kernels.keep_mask` on CPUs (``p`` rounded
    to a multiple of 1/256); elsewhere it is ``F.dropout``."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p <= 0:
            return x
        if cpu_kernels.applies(x):
            return cpu_kernels.byte_dropout(x, self.p)
        return F.dropout(x, self.p, training=True)

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
