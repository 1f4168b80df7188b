"""SimSort's spike detector: a transformer over the samples of preprocessed tetrode traces that
gives each sample a spike logit, and the events read from its probabilities.

Shapes: B windows, T samples, C channels, D model width.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Architectures by name: ``paper`` is the reference's (one token per sample, linear 4 -> 256,
#: 4 heads, feed-forward 1024); ``cpu``, the default, reads 4 samples per token, so attention
#: costs 16 times less, and still gives every sample its own logit.
DETECTOR_PRESETS: dict[str, dict] = {
    "cpu": dict(dim=64, depth=2, heads=4, ff_dim=256, dropout=0.1, patch=4),
    "paper": dict(dim=256, depth=4, heads=4, ff_dim=1024, dropout=0.1, patch=1),
}


def sinusoidal_positions(num: int, dim: int) -> Tensor:
    """(num, dim) the transformer's fixed sine and cosine position codes."""
    position = torch.arange(num, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    codes = torch.zeros(num, dim)
    codes[:, 0::2], codes[:, 1::2] = torch.sin(position * frequency), torch.cos(position * frequency)
    return codes


class SpikeDetector(nn.Module):
    """Per-sample spike logits of multichannel traces.

    Each token, ``patch`` consecutive samples of every channel, is embedded linearly, given a
    sinusoidal position, passed through pre-norm transformer blocks over the window's tokens,
    and read out as one logit per sample it holds.

    Parameters
    ----------
    num_channels : int, default: 4
        Channels per sample (a tetrode).
    dim, depth, heads, ff_dim : int
        Width, blocks, attention heads and feed-forward width.
    dropout : float
        Dropout in the blocks (training only).
    patch : int, default: 1
        Samples per token; a window's length must be a multiple of it.
    """

    def __init__(self, num_channels: int = 4, dim: int = 64, depth: int = 2, heads: int = 4, ff_dim: int = 256,
                 dropout: float = 0.1, patch: int = 1):  # fmt: skip
        super().__init__()
        self.config = dict(num_channels=num_channels, dim=dim, depth=depth, heads=heads, ff_dim=ff_dim,
                           dropout=dropout, patch=patch)  # fmt: skip
        self.patch = patch
        self.embed = nn.Linear(num_channels * patch, dim)
        block = nn.TransformerEncoderLayer(dim, heads, ff_dim, dropout, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.readout = nn.Linear(dim, patch)

    @classmethod
    def from_preset(cls, preset: str = "cpu", **overrides) -> SpikeDetector:
        if preset not in DETECTOR_PRESETS:
            raise ValueError(f"Unknown detector preset {preset!r}; choose one of {sorted(DETECTOR_PRESETS)}.")
        return cls(**{**DETECTOR_PRESETS[preset], **overrides})

    def forward(self, traces: Tensor) -> Tensor:
        """(B, T, C) traces -> (B, T) logits (T a multiple of ``patch``)."""
        b, t, c = traces.shape
        if t % self.patch:
            raise ValueError(f"The window's {t} samples are not a multiple of the detector's patch of {self.patch}.")
        tokens = traces.reshape(b, t // self.patch, self.patch * c)
        x = self.embed(tokens) + sinusoidal_positions(tokens.shape[1], self.embed.out_features).to(traces.device)
        return self.readout(self.norm(self.blocks(x))).reshape(b, t)


def detection_loss(logits: Tensor, labels: Tensor, pos_weight: float) -> Tensor:
    """Binary cross-entropy per sample, spike samples weighted by ``pos_weight`` (they are rare)."""
    weight = torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), pos_weight=weight)


def augment(traces: np.ndarray, rng: np.random.Generator, gain=(0.7, 1.3), noise=(0.0, 0.3)) -> np.ndarray:
    """(B, T, C) windows with a random gain per window and channel and added white noise (in the
    z-scored units), so the detector does not learn one amplitude or one noise level."""
    b, _, c = traces.shape
    scaled = traces * rng.uniform(*gain, (b, 1, c))
    return (scaled + rng.normal(size=traces.shape) * rng.uniform(*noise, (b, 1, 1))).astype(np.float32)


def events_from_probability(probability: np.ndarray, traces: np.ndarray, threshold: float = 0.5,
                            exclude_samples: int = 0) -> np.ndarray:  # fmt: skip
    """Spike samples read from per-sample probabilities: one event per run of samples above
    ``threshold``, placed at the run's largest deflection (the largest absolute value over the
    channels of ``traces``); an event within ``exclude_samples`` of a larger one is dropped.

    Parameters
    ----------
    probability : np.ndarray
        (T,) spike probability of each sample.
    traces : np.ndarray
        (T, C) the preprocessed traces the probabilities came from.
    threshold : float, default: 0.5
        Probability above which a sample is part of a spike.
    exclude_samples : int, default: 0
        Smallest distance between two events.

    Returns
    -------
    np.ndarray
        (E,) sorted sample indices.
    """
    above = np.concatenate([[False], np.asarray(probability) > threshold, [False]])
    starts, ends = np.flatnonzero(~above[:-1] & above[1:]), np.flatnonzero(above[:-1] & ~above[1:])
    if len(starts) == 0:
        return np.zeros(0, dtype=np.int64)
    deflection = np.abs(traces).max(axis=1)
    peaks = np.array([s + int(np.argmax(deflection[s:e])) for s, e in zip(starts, ends)], dtype=np.int64)
    if exclude_samples <= 0 or len(peaks) < 2:
        return peaks
    keep = np.ones(len(peaks), dtype=bool)
    for i in np.argsort(-deflection[peaks], kind="stable"):  # larger events claim their neighbourhood first
        if keep[i]:
            near = np.abs(peaks - peaks[i]) <= exclude_samples
            near[i] = False
            keep &= ~near
    return peaks[keep]
