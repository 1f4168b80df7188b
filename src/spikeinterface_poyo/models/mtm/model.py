"""MtM's NDT1-stitcher: a transformer over time bins with per-session stitchers, a session token
and a prompt token (Zhang et al., NeurIPS 2024).

Shapes: B windows, T bins, N units of the session, D model width, H heads.

    counts (B, T, N) --stitch_in[session]--> (B, T, D) --softsign * sqrt(D), linear--> tokens
    [session token, prompt token, tokens] + positions --pre-LN blocks--> LayerNorm
    --stitch_out[session]--> (B, T, N) log expected counts per bin

Stitchers and session tokens are kept per session id, so two sessions with as many units get
their own (the reference code keys them by unit count) and new sessions are added by
:meth:`MtM.add_session`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from ...core.device import resolve_device
from ..base import ModelFamily, load_state_checked
from ..masking import MTM_SCHEMES, SCHEMES, resolve_schemes, session_regions
from ..poyo.rotary import RotaryTimeEmbedding, apply_rotary

#: Architecture presets: a CPU default for sessions of 10-30 minutes, and the paper's (NDT1 with
#: learned positions). The CPU preset uses rotary positions, which the paper's appendix found
#: better and which learn far faster in the steps a CPU allows (benchmarks/results/mtm.json).
PRESETS = {
    "cpu": {"dim": 128, "depth": 2, "heads": 4, "mlp_ratio": 4, "dropout": 0.1, "position": "rope"},
    "paper": {"dim": 512, "depth": 5, "heads": 8, "mlp_ratio": 4, "dropout": 0.4, "position": "learned"},
}
PREFIX = 2  # session and prompt tokens in front of the bins


class Attention(nn.Module):
    """Multi-head self-attention, bidirectional or causal, with optional rotary positions."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, causal: bool, phasors: Tensor | None = None) -> Tensor:
        """(B, L, D) -> (B, L, D); token i attends to tokens j <= i when ``causal``; (B, L, Dh / 2)
        ``phasors`` rotate queries and keys by their positions (RoPE)."""
        q, k, v = self.qkv(x).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)  # 3 x (B, H, L, Dh)
        if phasors is not None:
            q, k = apply_rotary(q, phasors), apply_rotary(k, phasors)
        p = self.dropout if self.training else 0.0
        y = nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=causal)
        return self.out(y.transpose(1, 2).flatten(2))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim), nn.Dropout(dropout)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, causal: bool, phasors: Tensor | None = None) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x), causal, phasors))
        return x + self.mlp(self.norm2(x))


class MtM(ModelFamily, nn.Module):
    """Masked modelling of binned spike counts across sessions, units, regions and time.

    Parameters
    ----------
    dim, depth, heads, mlp_ratio, dropout : int, int, int, int, float
        Width, number of blocks, attention heads, MLP expansion and dropout (see :data:`PRESETS`).
    num_bins : int, default: 100
        Bins per window.
    bin_size : float, default: 0.02
        Bin width in seconds.
    position : {"learned", "rope"}, default: "learned"
        Learned position embeddings (NDT1) or rotary ones (better in the paper's appendix).
    schemes : sequence of str
        The masking schemes it is trained with (each has its prompt embedding).
    mask_ratio : float, default: 0.3
        Fraction of bins or units masked in training.
    preset : str or None
        Name of the preset the sizes came from (recorded in provenance).
    """

    family = "mtm"
    family_version = 1

    def __init__(
        self,
        dim: int = 128,
        depth: int = 3,
        heads: int = 4,
        mlp_ratio: int = 4,
        dropout: float = 0.2,
        num_bins: int = 100,
        bin_size: float = 0.02,
        position: str = "learned",
        schemes=MTM_SCHEMES,
        mask_ratio: float = 0.3,
        preset: str | None = None,
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be a multiple of heads ({heads}).")
        if position not in ("learned", "rope"):
            raise ValueError(f"position must be 'learned' or 'rope', got {position!r}.")
        self.config = {
            "dim": dim, "depth": depth, "heads": heads, "mlp_ratio": mlp_ratio, "dropout": dropout,
            "num_bins": int(num_bins), "bin_size": float(bin_size), "position": position,
            "schemes": list(resolve_schemes(schemes)), "mask_ratio": float(mask_ratio), "preset": preset,
        }  # fmt: skip
        self.num_bins, self.bin_size, self.schemes = int(num_bins), float(bin_size), tuple(self.config["schemes"])
        self.sessions: list[dict] = []  # per session: id, unit_ids, brain_area (index = stitcher index)
        self.stitch_in = nn.ModuleList()
        self.stitch_out = nn.ModuleList()
        self.session_tokens = nn.ParameterList()
        self.embed = nn.Linear(dim, dim)
        self.prompt = nn.Embedding(len(SCHEMES), dim)
        self.position = nn.Embedding(num_bins + PREFIX, dim) if position == "learned" else None
        # one rotary embedding for every block: positions in bins, periods from 2 bins to 4 windows
        self.rotary = (
            RotaryTimeEmbedding(dim // heads, dim // heads, 2.0, 4.0 * (num_bins + PREFIX))
            if position == "rope"
            else None
        )
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.meta = {"fingerprints": {}, "training": {}}

    # ---- sessions ---------------------------------------------------------------------------
    def session_index(self, session_id: str) -> int:
        """Index of a session's stitchers; a clear error for a session the model has none for."""
        for i, s in enumerate(self.sessions):
            if s["session_id"] == session_id:
                return i
        raise KeyError(
            f"The model has no stitcher for session {session_id!r}; it knows "
            f"{[s['session_id'] for s in self.sessions]}. "
            "Adapt it to the new session with sip.finetune_mtm(model, sorting, session_id=...)."
        )

    def add_session(
        self, session_id: str, unit_ids, brain_area=None, fingerprint: str | None = None, mean_counts=None
    ) -> int:
        """Add stitchers and a session token for a new session; returns its index.

        ``mean_counts`` ((N,) mean count per bin of each unit) starts the output stitcher at each
        unit's mean rate: without it a rarely firing unit starts near one spike per bin and takes
        most of a short training run to come down, which costs it its bits per spike."""
        if any(s["session_id"] == session_id for s in self.sessions):
            raise ValueError(f"The model has a session {session_id!r} already; give the new one another session_id.")
        dim, n = self.config["dim"], len(unit_ids)
        device = self.embed.weight.device
        self.stitch_in.append(nn.Linear(n, dim).to(device))
        self.stitch_out.append(nn.Linear(dim, n).to(device))
        if mean_counts is not None:
            with torch.no_grad():
                floor = 1.0 / (10.0 * self.num_bins)  # a unit silent in training: a tenth of a spike per window
                self.stitch_out[-1].bias.copy_(torch.log(torch.as_tensor(mean_counts, dtype=torch.float32) + floor))
        self.session_tokens.append(nn.Parameter(torch.randn(dim, device=device) * 0.02))
        area = None if brain_area is None else [str(a) for a in brain_area]
        self.sessions.append(
            {"session_id": str(session_id), "unit_ids": [str(u) for u in unit_ids], "brain_area": area}
        )
        if fingerprint is not None:
            self.meta.setdefault("fingerprints", {})[str(session_id)] = fingerprint
        return len(self.sessions) - 1

    def regions(self, session_id: str, min_units: int | None = None) -> dict[str, np.ndarray]:
        """The session's regions (:func:`~spikeinterface_poyo.models.masking.session_regions`)."""
        area = self.sessions[self.session_index(session_id)]["brain_area"]
        return session_regions(area) if min_units is None else session_regions(area, min_units)

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Everything shared by the sessions (what ``freeze_backbone`` freezes)."""
        own = {id(p) for m in (self.stitch_in, self.stitch_out, self.session_tokens) for p in m.parameters()}
        return [p for p in self.parameters() if id(p) not in own]

    # ---- forward ----------------------------------------------------------------------------
    def forward(self, counts: Tensor, session: int, scheme: str) -> Tensor:
        """(B, T, N) masked counts of session ``session`` -> (B, T, N) log expected counts per bin."""
        batch, num_bins, _ = counts.shape
        if num_bins > self.num_bins:
            raise ValueError(f"Windows of {num_bins} bins are longer than the model's {self.num_bins}.")
        dim = self.config["dim"]
        x = self.embed(nn.functional.softsign(self.stitch_in[session](counts)) * math.sqrt(dim))
        prefix = torch.stack([self.session_tokens[session], self.prompt.weight[SCHEMES.index(scheme)]])
        x = torch.cat([prefix.expand(batch, -1, -1), x], dim=1)
        if self.position is not None:
            x = x + self.position.weight[: num_bins + PREFIX]
        x = self.drop(x)
        causal = scheme == "causal"  # the prefix comes first, so under a causal mask it sees no bin
        phasors = None
        if self.rotary is not None:
            phasors = self.rotary(torch.arange(x.shape[1], device=x.device)).expand(batch, -1, -1)
        for block in self.blocks:
            x = block(x, causal, phasors)
        return self.stitch_out[session](self.norm(x[:, PREFIX:]))

    def prompt_for(self, scheme: str) -> str:
        """The prompt to evaluate ``scheme`` with: its own if trained, else the model's first."""
        return scheme if scheme in self.schemes else self.schemes[0]

    # ---- the family protocol ----------------------------------------------------------------
    def session_units(self) -> dict[str, list[str]]:
        return {s["session_id"]: list(s["unit_ids"]) for s in self.sessions}

    def get_config(self) -> dict:
        return {"architecture": self.config, "sessions": self.sessions}

    def get_tensors(self) -> dict:
        return {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}

    @classmethod
    def from_saved(cls, config: dict, tensors: dict, meta: dict, family_version: int = 1) -> MtM:
        model = cls(**config["architecture"])
        for s in config["sessions"]:
            model.add_session(s["session_id"], s["unit_ids"], s["brain_area"])
        load_state_checked(model, tensors, "the saved MtM model")
        model.meta = meta
        return model.eval()

    def to_device(self, device=None) -> MtM:
        """Move the model to ``device`` (CUDA when available, else the CPU)."""
        return self.to(resolve_device(device))

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device
