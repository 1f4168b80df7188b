"""SimSort's waveform embedder: snippets around detected spikes, denoised by a low-rank
reconstruction, encoded by a GRU into a unit-length embedding trained with a triplet loss so
that spikes of one neuron lie close together.

Shapes: N snippets, S samples per snippet, C channels, E embedding width.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Architectures by name: ``cpu`` is the default, ``paper`` the reference's 512-wide embedding.
EMBEDDER_PRESETS: dict[str, dict] = {
    "cpu": dict(hidden=64, layers=1, embedding_dim=64),
    "paper": dict(hidden=256, layers=2, embedding_dim=512),
}
#: The snippet around each spike, ms before and after its peak.
SNIPPET_MS = (0.6, 1.0)


def snippet_samples(sampling_frequency: float, snippet_ms: tuple[float, float] = SNIPPET_MS) -> tuple[int, int]:
    """Samples before and after the peak that a snippet holds at this sampling rate."""
    return tuple(int(round(ms * 1e-3 * sampling_frequency)) for ms in snippet_ms)


def extract_snippets(traces: np.ndarray, peaks: np.ndarray, before: int, after: int) -> np.ndarray:
    """(N, before + after, C) snippets of (T, C) ``traces`` around ``peaks`` (zero past the edges)."""
    padded = np.pad(traces, ((before, after), (0, 0)))
    offsets = np.arange(before + after)
    return padded[np.asarray(peaks, dtype=np.int64)[:, None] + offsets[None, :]].astype(np.float32)


def denoise_snippets(snippets: np.ndarray, rank: int = 5) -> np.ndarray:
    """Snippets reconstructed from their ``rank`` leading principal components (fitted on the
    snippets themselves): what is common to many spikes stays, independent noise goes."""
    n = len(snippets)
    if n <= rank:
        return snippets
    flat = snippets.reshape(n, -1)
    mean = flat.mean(axis=0)
    _, _, vt = np.linalg.svd(flat - mean, full_matrices=False)
    basis = vt[:rank]
    return (((flat - mean) @ basis.T) @ basis + mean).reshape(snippets.shape).astype(np.float32)


class WaveformEmbedder(nn.Module):
    """A unit-length embedding of each snippet.

    A GRU reads the snippet one sample (C channels) at a time; its last hidden state is mapped
    linearly to the embedding and normalised.

    Parameters
    ----------
    num_channels : int, default: 4
    hidden, layers : int
        GRU width and depth.
    embedding_dim : int
        E.
    """

    def __init__(self, num_channels: int = 4, hidden: int = 64, layers: int = 1, embedding_dim: int = 64):
        super().__init__()
        self.config = dict(num_channels=num_channels, hidden=hidden, layers=layers, embedding_dim=embedding_dim)
        self.gru = nn.GRU(num_channels, hidden, num_layers=layers, batch_first=True)
        self.project = nn.Linear(hidden, embedding_dim)

    @classmethod
    def from_preset(cls, preset: str = "cpu", **overrides) -> WaveformEmbedder:
        if preset not in EMBEDDER_PRESETS:
            raise ValueError(f"Unknown embedder preset {preset!r}; choose one of {sorted(EMBEDDER_PRESETS)}.")
        return cls(**{**EMBEDDER_PRESETS[preset], **overrides})

    def forward(self, snippets: Tensor) -> Tensor:
        """(N, S, C) -> (N, E), each row of unit norm."""
        _, hidden = self.gru(snippets)
        return F.normalize(self.project(hidden[-1]), dim=-1)


def triplet_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 0.2) -> Tensor:
    """Mean hinge on ``d(anchor, positive) - d(anchor, negative) + margin`` (Euclidean)."""
    return F.triplet_margin_loss(anchor, positive, negative, margin=margin)


def sample_triplets(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 3) indices of anchor, positive (same label) and negative (another label).

    Needs at least two labels with two members or more; anchors are drawn label-balanced.
    """
    labels = np.asarray(labels)
    members = {u: np.flatnonzero(labels == u) for u in np.unique(labels)}
    usable = [u for u, m in members.items() if len(m) >= 2]
    if len(usable) < 1 or len(members) < 2:
        raise ValueError("Triplets need two units at least, one of them with two spikes or more.")
    out = np.empty((count, 3), dtype=np.int64)
    others = np.array(list(members))
    for i, u in enumerate(rng.choice(usable, size=count)):
        out[i, :2] = rng.choice(members[u], size=2, replace=False)
        negative_unit = rng.choice(others[others != u])
        out[i, 2] = rng.choice(members[negative_unit])
    return out


@torch.no_grad()
def embed(embedder: WaveformEmbedder, snippets: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """(N, E) embeddings of (N, S, C) snippets."""
    device = next(embedder.parameters()).device
    parts = [embedder(torch.from_numpy(snippets[b : b + batch_size]).to(device)).cpu().numpy()
             for b in range(0, len(snippets), batch_size)]  # fmt: skip
    return np.concatenate(parts) if parts else np.zeros((0, embedder.config["embedding_dim"]), dtype=np.float32)
