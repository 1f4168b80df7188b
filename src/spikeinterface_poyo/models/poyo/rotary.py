"""Rotary embeddings of continuous time (RoFormer's RoPE with time for position), as unit
phasors, and rotating attention heads by them. Shapes: B batch, N tokens, H heads, Dh head dim."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


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
