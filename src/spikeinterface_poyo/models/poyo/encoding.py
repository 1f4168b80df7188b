"""POYO's encoding head: it predicts spikes instead of behaviour.

An output query per (unit, time bin) is the unit's embedding plus the masking scheme's prompt,
timed at the bin centre by the rotary embedding; it cross-attends the latents and is read out
as a log firing rate. It sits beside the behaviour readout and shares the encoder and latents,
so a model can learn from spikes without labels (masked modelling) and decode behaviour.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..masking import SCHEMES
from .layers import FeedForward, RotaryCrossAttention


class EncodingHead(nn.Module):
    """(B, Q) unit queries at bin centres, reading (B, L) latents -> (B, Q) log rates in Hz.

    Parameters
    ----------
    dim : int
        Model width D.
    heads, dim_head : int
        Heads of the cross-attention and their width.
    atn_dropout, ffn_dropout : float
        Dropout on attention weights and inside the feed-forward.
    emb_init_scale : float
        Standard deviation of the prompt embeddings at initialisation.
    """

    def __init__(
        self, dim: int, heads: int, dim_head: int, atn_dropout: float, ffn_dropout: float, emb_init_scale: float
    ):
        super().__init__()
        # one prompt per masking scheme (the MtM prompt): it tells latents and queries the task
        self.prompt_emb = nn.Embedding(len(SCHEMES), dim)
        nn.init.normal_(self.prompt_emb.weight, std=emb_init_scale)
        self.atn = RotaryCrossAttention(dim=dim, heads=heads, dim_head=dim_head, dropout=atn_dropout)
        self.ffn = nn.Sequential(nn.LayerNorm(dim), FeedForward(dim, dropout=ffn_dropout))
        self.readout = nn.Linear(dim, 1)

    def prompt(self, prompt_index: Tensor) -> Tensor:
        """(B,) scheme index -> (B, 1, D) prompt, broadcast over tokens."""
        return self.prompt_emb(prompt_index)[:, None, :]

    def forward(
        self,
        unit_queries: Tensor,
        query_rotary: Tensor,
        latents: Tensor,
        latent_rotary: Tensor,
        prompt_index: Tensor,
    ) -> Tensor:
        """Log firing rates (Hz) of the queried units and bins.

        Parameters
        ----------
        unit_queries : Tensor
            (B, Q, D) embedding of each queried unit.
        query_rotary, latent_rotary : Tensor
            Rotary phasors of the bin centres (B, Q, ...) and of the latents (B, L, ...).
        latents : Tensor
            (B, L, D) the processed latents.
        prompt_index : Tensor
            (B,) index of each window's masking scheme in :data:`~..masking.SCHEMES`.
        """
        queries = unit_queries + self.prompt(prompt_index)
        queries = queries + self.atn(queries, latents, query_rotary, latent_rotary)
        queries = queries + self.ffn(queries)
        return self.readout(queries)[..., 0]
