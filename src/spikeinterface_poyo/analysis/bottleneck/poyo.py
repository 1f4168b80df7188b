"""POYO as a decoder of binned counts, so that it can take a bottleneck like the other decoders.

:class:`BinnedPOYO` reads the same standardised square-root counts as the MLP and the GRU (the
``lags`` bins ending at each decoded time), but as POYO tokens: channel j of bin i is the value
token ``a_j + x_ij e_j``, timed at the bin centre, and these tokens go through POYO's encoder
cross-attention with rotary time exactly as spike tokens do; the latents, self-attention, output
query (at the decoded time, the window's end) and readout are POYO's own. With
:class:`~.decoders.BottleneckDecoder` in front, the k channels of ``z_t = W x_t + b`` are the value
tokens instead of the N units (BrainBits' bottleneck, placement ``"value"``).

A second, different quantity is the latent squeeze (``bottleneck="latent"``): every latent token
is mapped to k numbers and back (dim -> k -> dim) after the encoder, so k is the width of POYO's
internal channel, not the number of population directions read (BrainBits' k).

The backbone is a fresh POYO built from a preset, or a given (pretrained) POYO, copied for every
fit; with ``freeze_backbone=True`` only W, the channel embeddings (and the latent squeeze) train,
the analogue of BrainBits' frozen generator.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ...models.baselines.neural import NeuralDecoder
from ...models.poyo import POYO, PRESETS


class ValueTokens(nn.Module):
    """(B, bins, C) values -> (B, bins * C, dim) tokens: channel j's token is ``a_j + v e_j``.

    The value embedding ``e_j``, scaled by the value, carries it; the channel embedding ``a_j``
    keeps its size readable: the cross-attention's layer norm divides each context token by its
    own scale, so of a bare ``v e_j`` only the sign and a saturating function of ``|v|`` (through
    the norm's epsilon) would remain. (On the cosine simulation of the tests, k = 2, the bare form
    learns almost as well: held-out R² 0.66 against 0.67-0.70.)

    Parameters
    ----------
    channels : int
        C, the number of channels (k behind a bottleneck, N without one).
    dim : int
        POYO's width.
    init_scale : float
        Standard deviation of the normal initialisation (POYO's ``emb_init_scale``).
    """

    def __init__(self, channels: int, dim: int, init_scale: float):
        super().__init__()
        self.channel = nn.Parameter(torch.randn(channels, dim) * init_scale)
        self.value = nn.Parameter(torch.randn(channels, dim) * init_scale)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (self.channel + z[..., None] * self.value).flatten(1, 2)


class LatentSqueeze(nn.Module):
    """Every latent token through k numbers: ``up(down(latent))``, dim -> k -> dim (it replaces the
    latent, so nothing passes around it). Its k is the width of POYO's internal channel."""

    def __init__(self, dim: int, k: int):
        super().__init__()
        self.down, self.up = nn.Linear(dim, k), nn.Linear(k, dim)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(latents))


class ValueTokenPOYO(nn.Module):
    """A POYO backbone reading (B, bins, C) standardised values as value tokens -> (B, D).

    Parameters
    ----------
    backbone : POYO
        The model (used as given: copy it first).
    channels : int
        C, the value channels per bin.
    bin_size : float
        Bin width in seconds.
    lags, leads : int
        Bins before (the one ending at the decoded time included) and after the decoded time.
    session_index : int
        Session vocabulary index of the output query.
    freeze_backbone : bool
        Keep the backbone's parameters fixed (and its dropout off).
    latent_width : int or None
        Squeeze every latent token to this many numbers (:class:`LatentSqueeze`); None for none.
    """

    def __init__(self, backbone: POYO, channels: int, bin_size: float, lags: int, leads: int, session_index: int,
                 freeze_backbone: bool = False, latent_width: int | None = None):  # fmt: skip
        super().__init__()
        self.backbone, self.freeze_backbone = backbone, freeze_backbone
        backbone.requires_grad_(not freeze_backbone)
        self.values = ValueTokens(channels, backbone.dim, backbone.config["emb_init_scale"])
        self.squeeze = LatentSqueeze(backbone.dim, latent_width) if latent_width is not None else None
        # the window ends with the last bin; each bin's tokens sit at its centre, the query at the decoded time
        start = backbone.sequence_length - (lags + leads) * bin_size
        centres = start + (np.arange(lags + leads) + 0.5) * bin_size
        self.register_buffer("token_times", torch.tensor(np.repeat(centres, channels), dtype=torch.float32))
        self.register_buffer("query_time", torch.tensor([[start + lags * bin_size]], dtype=torch.float32))
        self.register_buffer("session_index", torch.tensor([session_index], dtype=torch.long))

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_backbone:  # a frozen backbone computes the same function in training as in decoding
            self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = len(x)
        out = self.backbone.decode_embedded(
            self.values(x), self.token_times.expand(batch, -1), self.session_index.expand(batch),
            self.query_time.expand(batch, -1), latent_map=self.squeeze,
        )  # fmt: skip
        return out[:, 0]


class BinnedPOYO(NeuralDecoder):
    """POYO on binned counts: each unit's standardised square-root count in each bin is a value token.

    The decoder of bottleneck curves for POYO (see the module docstring): ``decoder="poyo"`` or a
    POYO model given to :func:`~.sweep.bottleneck_curve` becomes one, and
    :class:`~.decoders.BottleneckDecoder` puts ``z_t = W x_t + b`` in front of it. On its own it is
    POYO without a bottleneck, reading the units' binned counts (not their spike times). Trained
    by the baselines' loop (AdamW at a constant rate, early stopping on the last ``val_fraction``
    of the training time); an analysis model, not saved.

    Parameters
    ----------
    preset : str, default: "small"
        Architecture of a fresh backbone (:data:`~spikeinterface_poyo.models.poyo.PRESETS`), its window
        ``(lags + leads) * bin_size`` long. Ignored when ``model`` is given.
    model : POYO or None, default: None
        A (pretrained) POYO to start from instead, copied for every fit and left unchanged. Its
        readout must have as many dimensions as the behaviour, its window must hold the bins (they
        fill its end), and its output query is the session ``session_id`` (or its only session).
    freeze_backbone : bool, default: False
        With ``model``: train only the channel embeddings (and, behind a bottleneck, W or the
        latent squeeze), the rest of the POYO fixed.
    bin_size : float, default: 0.05
        Bin width in seconds.
    lags : int, default: 10
        Bins up to and including the one ending at the decoded time.
    leads : int, default: 0
        Bins after the decoded time (look-ahead); 0 keeps it causal.
    lr, weight_decay, batch_size, max_epochs, patience, val_fraction, max_time_s
        Training, as for :class:`~spikeinterface_poyo.models.baselines.MLPDecoder`.
    seed : int, default: 0
        Seed of initialisation, shuffling and dropout.
    device : str, torch.device or None
        Defaults to CUDA when available, else CPU.
    session_id : str, default: "session"
        Name of the session it is fitted on (with ``model``: the session whose query decodes).
    """

    family = None  # an analysis model: not saved as a family of its own
    label = "poyo"
    #: samples per forward pass when predicting: each is a window of (lags + leads) * N tokens
    predict_chunk = 512

    def __init__(self, preset: str = "small", model: POYO | None = None, freeze_backbone: bool = False,
                 bin_size: float = 0.05, lags: int = 10, leads: int = 0, lr: float = 1e-3, weight_decay: float = 1e-4,
                 batch_size: int = 128, max_epochs: int = 100, patience: int = 10, val_fraction: float = 0.1,
                 max_time_s: float | None = None, seed: int = 0, device=None, session_id: str = "session"):  # fmt: skip
        super().__init__(**{k: v for k, v in locals().items() if k not in ("self", "__class__")})

    # ---- the backbone -----------------------------------------------------------------------
    def check_backbone(self) -> None:
        """Refuse settings no backbone can be built from, before any training."""
        if self.model is None:
            if self.freeze_backbone:
                raise ValueError(
                    "freeze_backbone=True needs a pretrained POYO to freeze: pass model=<a trained POYO> (for example "
                    "sip.load_model(folder) or a fitted POYODecoder's model_), or leave freeze_backbone False."
                )
            if self.preset not in PRESETS:
                raise ValueError(f"Unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}.")
            return
        if not isinstance(self.model, POYO):
            raise ValueError(f"model must be a POYO, got a {type(self.model).__name__}.")
        if self.window_length > self.model.sequence_length + 1e-9:
            raise ValueError(
                f"{self.lags + self.leads} bins of {self.bin_size:g} s span {self.window_length:g} s, more than the "
                f"POYO's {self.model.sequence_length:g} s window; take fewer lags or leads."
            )
        self._session_index(self.model)

    def _session_index(self, model: POYO) -> int:
        sessions = model.session_emb.vocab[1:]
        if self.session_id in sessions:
            return model.session_emb.tokenizer(self.session_id)
        if len(sessions) == 1:
            return 1
        raise ValueError(
            f"The POYO decodes {len(sessions)} sessions and {self.session_id!r} is none of them; pass session_id= one "
            f"of {sessions[:5]}{'...' if len(sessions) > 5 else ''}."
        )

    @classmethod
    def around(cls, model: POYO, **settings) -> BinnedPOYO:
        """A BinnedPOYO on ``model`` whose ``lags`` bins fill the model's window."""
        bin_size = cls(**settings).bin_size  # the one given, or the default
        return cls(model=model, lags=max(1, int(np.floor(model.sequence_length / bin_size + 1e-9))), **settings)

    @property
    def width(self) -> int:
        """POYO's width (dim): the widest latent squeeze."""
        return self.model.dim if self.model is not None else PRESETS[self.preset]["dim"]

    def _backbone(self, dim_out: int) -> POYO:
        """A fresh POYO from the preset, or a copy of the given one (whose readout must fit)."""
        self.check_backbone()
        if self.model is None:
            # the window is the bins; a latent step longer than it would put every latent outside it
            step = min(PRESETS[self.preset]["latent_step"], self.window_length)
            backbone = POYO.from_preset(self.preset, dim_out, sequence_length=self.window_length, latent_step=step)
            backbone.session_emb.extend_vocab([self.session_id])
            return backbone
        if self.model.readout.out_features != dim_out:
            raise ValueError(
                f"The POYO reads out {self.model.readout.out_features} dimensions and the behaviour has {dim_out}; "
                "give it the behaviour it was trained on."
            )
        return copy.deepcopy(self.model).cpu()

    def _network(self, num_units: int, dim_out: int, latent_width: int | None = None) -> nn.Module:
        """POYO reading ``num_units`` value channels per bin; with ``latent_width``, its latents squeezed."""
        backbone = self._backbone(dim_out)
        if latent_width is not None and not 1 <= latent_width <= backbone.dim:
            raise ValueError(
                f"A latent squeeze of width k = {latent_width} is more than POYO's width dim = {backbone.dim}; take "
                f"1 <= k <= {backbone.dim}."
            )
        return ValueTokenPOYO(backbone, num_units, self.bin_size, self.lags, self.leads,
                              self._session_index(backbone), bool(self.freeze_backbone), latent_width)  # fmt: skip

    def _forward_all(self, x: torch.Tensor, chunk: int | None = None) -> np.ndarray:
        return super()._forward_all(x, chunk or self.predict_chunk)


def as_binned_poyo(decoder) -> BinnedPOYO | None:
    """``decoder`` as a :class:`BinnedPOYO` when it is a POYO (``"poyo"``; a POYO model or a fitted
    ``POYODecoder``: on that model, its window filled with bins; an unfitted ``POYODecoder``: its
    preset); None when it is not one."""
    if isinstance(decoder, str):
        return BinnedPOYO() if decoder.lower() == "poyo" else None
    if isinstance(decoder, BinnedPOYO):
        return BinnedPOYO(**decoder.get_params())
    if isinstance(decoder, POYO):
        return BinnedPOYO.around(decoder)
    if getattr(decoder, "wraps_family", None) == "poyo":
        fitted = getattr(decoder, "model_", None)
        if fitted is not None:
            return BinnedPOYO.around(fitted, session_id=decoder.session_id)
        return BinnedPOYO(preset=decoder.preset, session_id=decoder.session_id)
    return None
