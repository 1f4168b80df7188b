"""The bottleneck itself: ``z_t = W x_t + b`` at every bin, before a decoder's own layers.

The map is learned (jointly with the decoder), fixed to the identity (the ceiling with k = N) or
fixed to the first principal axes of the training inputs (an unsupervised comparison).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

#: How the map W is obtained.
MODES = ("learned", "identity", "pca")


class LinearBottleneck(nn.Module):
    """``z = x W^T + b`` on the last axis of (B, bins, N) inputs: the same map at every bin.

    Parameters
    ----------
    num_units : int
        N, the width of the inputs.
    k : int
        The width of the bottleneck.
    fixed : (torch.Tensor, torch.Tensor) or None
        A fixed (k, N) map and (k,) offset (not trained); None learns both, from the standard
        initialisation of ``nn.Linear``.
    """

    def __init__(self, num_units: int, k: int, fixed: tuple[torch.Tensor, torch.Tensor] | None = None):
        super().__init__()
        if fixed is None:
            self.linear = nn.Linear(num_units, k)
        else:
            weight, bias = fixed
            self.register_buffer("fixed_weight", weight.float().clone())
            self.register_buffer("fixed_bias", bias.float().clone())
            self.linear = None

    @property
    def weight(self) -> torch.Tensor:
        """The (k, N) map W."""
        return self.linear.weight if self.linear is not None else self.fixed_weight

    @property
    def bias(self) -> torch.Tensor:
        return self.linear.bias if self.linear is not None else self.fixed_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x, self.weight.T) + self.bias


class Bottlenecked(nn.Module):
    """A bottleneck followed by a decoder network that reads (B, bins, k).

    A decoder's dropout on its inputs (the GRU's) is taken out of the network and applied to the
    units before the bottleneck: dropping one of k bottleneck channels would be a far stronger
    regulariser at small k than dropping units is, and with W = I the order is the same as without
    a bottleneck.
    """

    def __init__(self, bottleneck: LinearBottleneck, network: nn.Module):
        super().__init__()
        self.input_dropout = nn.Identity()
        if hasattr(network, "input_dropout"):
            self.input_dropout, network.input_dropout = network.input_dropout, nn.Identity()
        self.bottleneck, self.network = bottleneck, network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.bottleneck(self.input_dropout(x)))


class LinearReadout(nn.Module):
    """The Wiener filter's form trained by gradient: one linear map of the flattened bins."""

    def __init__(self, num_inputs: int, dim_out: int):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(num_inputs, dim_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def identity_map(num_units: int) -> tuple[torch.Tensor, torch.Tensor]:
    """W = I, b = 0."""
    return torch.eye(num_units), torch.zeros(num_units)


def pca_map(x_train: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """W: the first ``k`` principal axes of the training inputs (bins pooled), b centring z."""
    flat = x_train.reshape(-1, x_train.shape[-1]).float()
    mean = flat.mean(dim=0)
    centred = flat - mean
    # eigenvectors of the (N, N) covariance, largest variance first (cheaper than an SVD of the samples)
    _, vectors = torch.linalg.eigh((centred.T @ centred).double() / len(flat))
    weight = vectors.flip(-1)[:, :k].T.float()
    return weight, -weight @ mean


def null_space(weight: np.ndarray) -> np.ndarray:
    """(N, N - rank) orthonormal basis of the inputs a (k, N) map W does not see."""
    _, s, vh = np.linalg.svd(np.asarray(weight, dtype=np.float64))
    rank = int((s > s.max() * 1e-10).sum()) if len(s) else 0
    return vh[rank:].T
