"""EIT's two modules as plain nn.Modules: the individual transformer, run over each neuron's own
time series with weights shared by every neuron, and the population transformer across neurons.

Shapes: B windows, T bins, N neurons, d the individual width (16), D outputs.
"""

from __future__ import annotations

import torch
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention whose inner width (heads x head_dim) is its own, not the token width."""

    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=False)
        self.out = nn.Sequential(nn.Linear(heads * head_dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        """(B, L, dim) -> (B, L, dim); ``causal``: token i attends to tokens 0..i only."""
        b, length, _ = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out(out.transpose(1, 2).reshape(b, length, -1))


class Block(nn.Module):
    """Pre-norm attention and feed-forward. ``attention_residual=False`` replaces the stream by
    the attention's output, as EIT's individual transformer does (its feed-forward keeps its residual)."""

    def __init__(self, dim, heads, head_dim, ff_dim, dropout, attention_residual: bool = True):
        super().__init__()
        self.attention_residual = attention_residual
        self.norm1, self.attention = nn.LayerNorm(dim), Attention(dim, heads, head_dim, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        attended = self.attention(self.norm1(x), causal)
        x = x + attended if self.attention_residual else attended
        return x + self.ff(self.norm2(x))


class IndividualModule(nn.Module):
    """Each neuron's counts over time -> its latents (d per bin) and their projection (1 per bin).

    The same weights for every neuron, so the module is permutation-equivariant over neurons and
    runs on any number of them: the part of EIT that transfers to another animal.
    """

    def __init__(self, num_bins: int, dim: int = 16, depth: int = 2, heads: int = 6, head_dim: int = 64,
                 ff_dim: int = 32, dropout: float = 0.0, attention_residual: bool = False,
                 time_embedding: bool = False, causal: bool = False):  # fmt: skip
        super().__init__()
        self.causal = causal
        self.embed = nn.Linear(1, dim)
        # EIT has no time embedding: its individual transformer tells bins apart only through the counts
        self.time_embedding = nn.Parameter(torch.zeros(num_bins, dim)) if time_embedding else None
        self.blocks = nn.ModuleList(
            Block(dim, heads, head_dim, ff_dim, dropout, attention_residual) for _ in range(depth)
        )
        self.projection = nn.Linear(dim, 1)

    def forward(self, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, N) centred counts -> latents (B, N, T, d) and projections (B, N, T)."""
        b, t, n = counts.shape
        x = self.embed(counts.transpose(1, 2).reshape(b * n, t, 1))  # one sequence per (window, neuron)
        if self.time_embedding is not None:
            x = x + self.time_embedding[:t]
        for block in self.blocks:
            x = block(x, self.causal)
        latents = x.view(b, n, t, -1)
        return latents, self.projection(latents)[..., 0]


class PopulationModule(nn.Module):
    """Latents of every neuron at one bin, with a learned embedding per neuron -> (B, T, D).

    The tokens are the neurons; each is projected to one number after the transformer, and a
    layer norm, dropout and a linear map over the N numbers give the output of that bin.
    """

    def __init__(self, num_units: int, dim_out: int, dim: int = 16, depth: int = 2, heads: int = 6,
                 head_dim: int = 64, ff_dim: int = 16, dropout: float = 0.5, neuron_dropout: float = 0.5):  # fmt: skip
        super().__init__()
        self.unit_embedding = nn.Parameter(torch.randn(num_units, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, head_dim, ff_dim, dropout) for _ in range(depth))
        self.projection = nn.Linear(dim, 1)
        self.readout = nn.Sequential(nn.LayerNorm(num_units), nn.Dropout(neuron_dropout), nn.Linear(num_units, dim_out))

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        b, n, t, d = latents.shape
        x = latents.permute(0, 2, 1, 3).reshape(b * t, n, d) + self.unit_embedding
        for block in self.blocks:
            x = block(x)
        return self.readout(self.projection(x)[..., 0]).view(b, t, -1)


class IndividualReadout(nn.Module):
    """Dropout and a linear map from the N projections of a bin to the output: EIT's auxiliary
    head on the individual path, and its readout after transfer."""

    def __init__(self, num_units: int, dim_out: int, neuron_dropout: float = 0.5):
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(neuron_dropout), nn.Linear(num_units, dim_out))

    def forward(self, projections: torch.Tensor) -> torch.Tensor:
        """(B, N, T) -> (B, T, D)."""
        return self.net(projections.transpose(1, 2))


class EITNetwork(nn.Module):
    """Individual module, then (unless it was left out at transfer) the population module.

    ``per_bin`` gives both outputs at every bin, (B, T, D) each (None for a missing population
    module); ``outputs`` both at ``read_bin``, the bin ending at the decoded time, for EIT's loss;
    ``forward`` the decoded value (B, D): the population output, or the individual readout's
    without a population module. A ``frozen`` individual module stays in evaluation mode.
    """

    def __init__(self, individual: IndividualModule, population: PopulationModule | None,
                 individual_readout: IndividualReadout, read_bin: int = -1, frozen: bool = False):  # fmt: skip
        super().__init__()
        self.individual, self.population, self.individual_readout = individual, population, individual_readout
        self.read_bin, self.frozen = read_bin, frozen
        if frozen:
            self.individual.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.individual.eval()
        return self

    def per_bin(self, counts: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        latents, projections = self.individual(counts)
        population = self.population(latents) if self.population is not None else None
        return population, self.individual_readout(projections)

    def outputs(self, counts: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        latents, projections = self.individual(counts)
        # both readouts act on each bin alone: run them on the read bin only
        pick = slice(self.read_bin, self.read_bin + 1) if self.read_bin != -1 else slice(-1, None)
        latents, projections = latents[:, :, pick], projections[:, :, pick]
        population = self.population(latents)[:, 0] if self.population is not None else None
        return population, self.individual_readout(projections)[:, 0]

    def forward(self, counts: torch.Tensor) -> torch.Tensor:
        population, individual = self.outputs(counts)
        return individual if population is None else population
