"""The POYO model (Azabou et al., NeurIPS 2023) as a plain ``nn.Module``.

Spikes are tokens: a unit embedding plus a token-type embedding, timed by rotary
embeddings. One rotary cross-attention compresses a window's tokens into latents
laid on a time grid, self-attention blocks refine them, and output queries (a
session embedding timed at the requested timestamps) read the behaviour out.
Names of parameters and arguments match torch_brain's ``POYO``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ...core.device import resolve_device
from ...core.spikes import TokenType
from ...core.windows import CONTEXTS, check_context
from ..base import BehaviorDecoder, load_state_checked
from .encoding import EncodingHead
from .layers import ByteDropout, FeedForward, RotaryCrossAttention, RotarySelfAttention, VocabEmbedding
from .predict import predict_tokens
from .rotary import RotaryTimeEmbedding

__all__ = ["POYO", "PRESETS", "TokenType"]

#: Architectures by name. ``tiny`` is for tests, ``small`` is the CPU default, and the
#: two ``poyo_*`` entries are the paper's single-session (1.3M) and multi-session
#: (11.8M) configurations.
PRESETS: dict[str, dict] = {
    "tiny": dict(
        dim=32,
        depth=1,
        dim_head=16,
        cross_heads=1,
        self_heads=2,
        num_latents_per_step=4,
        latent_step=0.125,
        ffn_dropout=0.1,
        lin_dropout=0.1,
        atn_dropout=0.0,
    ),
    "small": dict(
        dim=64,
        depth=2,
        dim_head=32,
        cross_heads=2,
        self_heads=4,
        num_latents_per_step=8,
        latent_step=0.125,
        ffn_dropout=0.2,
        lin_dropout=0.2,
        atn_dropout=0.0,
    ),
    "poyo_1.3M": dict(
        dim=64,
        depth=6,
        dim_head=64,
        cross_heads=2,
        self_heads=8,
        num_latents_per_step=16,
        latent_step=0.125,
        ffn_dropout=0.2,
        lin_dropout=0.4,
        atn_dropout=0.2,
        t_max=4.0,
    ),
    "poyo_11.8M": dict(
        dim=128,
        depth=24,
        dim_head=64,
        cross_heads=2,
        self_heads=8,
        num_latents_per_step=32,
        latent_step=0.125,
        ffn_dropout=0.2,
        lin_dropout=0.4,
        atn_dropout=0.2,
        t_max=4.0,
    ),
}


class POYO(BehaviorDecoder, nn.Module):
    """POYO PerceiverIO decoder.

    Parameters
    ----------
    dim_out : int
        Number of behaviour dimensions read out.
    sequence_length : float, default: 1.0
        Window length in seconds.
    latent_step : float, default: 0.125
        Spacing of the latent time grid in seconds.
    num_latents_per_step : int, default: 64
        Latents per grid step (each with its own learned embedding).
    dim : int, default: 512
        Model width D.
    depth : int, default: 2
        Number of latent self-attention blocks.
    dim_head : int, default: 64
        Width of each attention head.
    cross_heads, self_heads : int
        Heads of the cross-attentions and of the self-attentions.
    ffn_dropout, lin_dropout, atn_dropout : float
        Dropout inside feed-forwards, on the residual branches of the processor, and on
        attention weights.
    emb_init_scale : float, default: 0.02
        Standard deviation of embedding initialisation.
    t_min, t_max : float
        Shortest and longest rotary period, in seconds.
    encoding_head : bool, default: False
        Whether the model also has an :class:`~.encoding.EncodingHead` (spikes predicted from
        the latents, for masked self-supervised training); see :meth:`add_encoding_head`.
    context : {"centred", "causal"}, default: "centred"
        Where its windows sit around a prediction time, in training and decoding (see
        :mod:`spikeinterface_poyo.core.windows`): ``"centred"`` reads each time near the middle of
        overlapping windows (spikes after it are used); ``"causal"`` weighs in training the
        queries in the last ``latent_step`` of each window most and decodes each time ``t`` from
        the window ``[t - sequence_length, t)`` alone (closed-loop use,
        :class:`~.streaming.StreamingDecoder`).
    """

    family = "poyo"
    contexts = CONTEXTS

    def __init__(
        self,
        *,
        dim_out: int,
        sequence_length: float = 1.0,
        latent_step: float = 0.125,
        num_latents_per_step: int = 64,
        dim: int = 512,
        depth: int = 2,
        dim_head: int = 64,
        cross_heads: int = 1,
        self_heads: int = 8,
        ffn_dropout: float = 0.2,
        lin_dropout: float = 0.4,
        atn_dropout: float = 0.0,
        emb_init_scale: float = 0.02,
        t_min: float = 1e-4,
        t_max: float = 2.0627,
        encoding_head: bool = False,
        context: str = "centred",
    ):
        super().__init__()
        if sequence_length <= 0 or latent_step <= 0:
            raise ValueError("sequence_length and latent_step must be positive.")
        check_context(context)
        self.config = dict(
            dim_out=int(dim_out),
            sequence_length=float(sequence_length),
            latent_step=float(latent_step),
            num_latents_per_step=int(num_latents_per_step),
            dim=int(dim),
            depth=int(depth),
            dim_head=int(dim_head),
            cross_heads=int(cross_heads),
            self_heads=int(self_heads),
            ffn_dropout=float(ffn_dropout),
            lin_dropout=float(lin_dropout),
            atn_dropout=float(atn_dropout),
            emb_init_scale=float(emb_init_scale),
            t_min=float(t_min),
            t_max=float(t_max),
        )
        if encoding_head:  # absent from older configurations and torch_brain's: they have no head
            self.config["encoding_head"] = True
        if context != "centred":  # likewise: a folder without the key is a centred model
            self.config["context"] = context
        self.sequence_length = float(sequence_length)
        self.latent_step = float(latent_step)
        self.num_latents_per_step = int(num_latents_per_step)
        self.dim = dim
        # JSON-ready description of what the readout means: behaviour name, unit and
        # dimensions, per-session target statistics, and how the model was trained.
        self.meta: dict = {}

        self.unit_emb = VocabEmbedding(dim, init_scale=emb_init_scale)
        self.session_emb = VocabEmbedding(dim, init_scale=emb_init_scale)
        self.token_type_emb = nn.Embedding(4, dim)
        self.latent_emb = nn.Embedding(num_latents_per_step, dim)
        nn.init.normal_(self.token_type_emb.weight, std=emb_init_scale)
        nn.init.normal_(self.latent_emb.weight, std=emb_init_scale)
        self.rotary_emb = RotaryTimeEmbedding(dim_head, dim_head // 2, t_min, t_max)
        self.dropout = ByteDropout(lin_dropout)

        self.enc_atn = RotaryCrossAttention(
            dim=dim, heads=cross_heads, dim_head=dim_head, dropout=atn_dropout, rotate_value=True
        )
        self.enc_ffn = nn.Sequential(nn.LayerNorm(dim), FeedForward(dim, dropout=ffn_dropout))
        self.proc_layers = nn.ModuleList(
            nn.Sequential(
                RotarySelfAttention(
                    dim=dim, heads=self_heads, dim_head=dim_head, dropout=atn_dropout, rotate_value=True
                ),
                nn.Sequential(nn.LayerNorm(dim), FeedForward(dim, dropout=ffn_dropout)),
            )
            for _ in range(depth)
        )
        self.dec_atn = RotaryCrossAttention(
            dim=dim, heads=cross_heads, dim_head=dim_head, dropout=atn_dropout, rotate_value=False
        )
        self.dec_ffn = nn.Sequential(nn.LayerNorm(dim), FeedForward(dim, dropout=ffn_dropout))
        self.readout = nn.Linear(dim, dim_out)
        self.encoding_head = None
        if encoding_head:
            self.add_encoding_head()

    def add_encoding_head(self) -> EncodingHead:
        """Give the model an encoding head (untrained) if it has none; returns the head."""
        if self.encoding_head is None:
            c = self.config
            self.encoding_head = EncodingHead(
                c["dim"], c["cross_heads"], c["dim_head"], c["atn_dropout"], c["ffn_dropout"], c["emb_init_scale"]
            ).to(self.readout.weight.device)
            self.config["encoding_head"] = True
        return self.encoding_head

    @classmethod
    def from_preset(cls, preset: str, dim_out: int, **overrides) -> POYO:
        """Build a model from a named architecture in :data:`PRESETS`."""
        if preset not in PRESETS:
            raise ValueError(f"Unknown preset {preset!r}; choose one of {sorted(PRESETS)}.")
        return cls(dim_out=dim_out, **{**PRESETS[preset], **overrides})

    @property
    def device(self) -> torch.device:
        return self.readout.weight.device

    def latent_tokens(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """Latent indices and timestamps on the window's grid, each (B, L)."""
        steps = np.arange(0, self.sequence_length, self.latent_step) + self.latent_step / 2
        times = torch.as_tensor(np.repeat(steps, self.num_latents_per_step), dtype=torch.float32)
        index = torch.arange(self.num_latents_per_step).repeat(len(steps))
        return (
            index.expand(batch_size, -1).to(self.device),
            times.expand(batch_size, -1).to(self.device),
        )

    def forward(
        self,
        *,
        input_unit_index: Tensor,
        input_timestamps: Tensor,
        input_token_type: Tensor,
        input_mask: Tensor | None = None,
        latent_index: Tensor,
        latent_timestamps: Tensor,
        session_index: Tensor | None = None,
        output_timestamps: Tensor | None = None,
        rate_unit_index: Tensor | None = None,
        rate_timestamps: Tensor | None = None,
        prompt_index: Tensor | None = None,
    ):
        """Decode behaviour at the output timestamps of each window, and/or predict spikes.

        Parameters
        ----------
        input_unit_index, input_token_type : Tensor
            (B, N) vocabulary index and token type of each token.
        input_timestamps : Tensor
            (B, N) token times in seconds from the window start.
        input_mask : Tensor or None
            (B, N) True for real tokens, False for padding.
        latent_index, latent_timestamps : Tensor
            (B, L) latent embedding index and time, see :meth:`latent_tokens`.
        session_index : Tensor or None
            (B,) session vocabulary index (behaviour decoding).
        output_timestamps : Tensor or None
            (B, M) times to decode behaviour at, in seconds from the window start.
        rate_unit_index, rate_timestamps : Tensor or None
            (B, Q) unit vocabulary index and bin-centre time of each spike query (the encoding
            head).
        prompt_index : Tensor or None
            (B,) masking scheme of each window (index into
            :data:`~spikeinterface_poyo.models.masking.SCHEMES`), added to the latents and the
            spike queries; None for plain behaviour decoding.

        Returns
        -------
        Tensor or tuple of Tensor
            (B, M, dim_out) decoded behaviour (in the model's standardised units), (B, Q) log
            firing rates in Hz when only spike queries are given, or both, in that order.
        """
        if len(self.unit_emb) < 2 or len(self.session_emb) < 2:
            raise ValueError("The unit and session vocabularies are empty; train the model or load one first.")
        if rate_unit_index is not None and self.encoding_head is None:
            raise ValueError("The model has no encoding head; add one with model.add_encoding_head() and train it.")
        if rate_unit_index is not None and prompt_index is None:
            raise ValueError("Spike queries need prompt_index, the masking scheme of each window.")
        if output_timestamps is None and rate_unit_index is None:
            raise ValueError(
                "Give output_timestamps (behaviour), rate_unit_index and rate_timestamps (spikes) or both."
            )
        # A token's content is a function of its unit and type only (time enters by rotation),
        # so its key and value are computed once per distinct (unit, type) pair and gathered.
        num_types = self.token_type_emb.num_embeddings
        pairs, token_pair = torch.unique(input_unit_index * num_types + input_token_type, return_inverse=True)
        token_table = self.unit_emb(pairs // num_types) + self.token_type_emb(pairs % num_types)
        # tokens' keys and values are fresh gathers, turned in place on the turning channels
        # only; so are the latents' and queries' projections without autograd
        token_rotary = self.rotary_emb(input_timestamps, turning_only=True)
        turning_only = not torch.is_grad_enabled()
        latents = self.latent_emb(latent_index)
        if prompt_index is not None:
            latents = latents + self.encoding_head.prompt(prompt_index)
        latent_rotary = self.rotary_emb(latent_timestamps, turning_only)
        latents = self._encode(latents, latent_rotary, token_table, token_rotary, input_mask, token_pair)

        out = []
        if output_timestamps is not None:
            out.append(self._read_behavior(latents, latent_rotary, session_index, output_timestamps))
        if rate_unit_index is not None:
            rate_rotary = self.rotary_emb(rate_timestamps, turning_only)
            out.append(self.encoding_head(self.unit_emb(rate_unit_index), rate_rotary, latents, latent_rotary,
                                          prompt_index))  # fmt: skip
        return out[0] if len(out) == 1 else tuple(out)

    def _encode(self, latents, latent_rotary, context, context_rotary, context_mask=None, context_index=None,
                latent_map=None) -> Tensor:  # fmt: skip
        """The latents after the encoder (cross-attention onto the context, then its feed-forward),
        ``latent_map`` when given, and the self-attention blocks."""
        latents = latents + self.enc_atn(latents, context, latent_rotary, context_rotary, context_mask, context_index)
        return self._process(latents, latent_rotary, latent_map)

    def _process(self, latents, latent_rotary, latent_map=None) -> Tensor:
        """What follows the encoder's cross-attention: its feed-forward, ``latent_map`` when
        given, and the self-attention blocks; (B, L, D) in and out."""
        latents = latents + self.enc_ffn(latents)
        if latent_map is not None:
            latents = latent_map(latents)
        for self_attn, feed_forward in self.proc_layers:
            latents = latents + self.dropout(self_attn(latents, latent_rotary))
            latents = latents + self.dropout(feed_forward(latents))
        return latents

    def _read_behavior(self, latents, latent_rotary, session_index, output_timestamps) -> Tensor:
        """(B, M, dim_out) standardised behaviour read by the session's queries at the output timestamps."""
        queries = self.session_emb(session_index)[:, None, :].expand(-1, output_timestamps.shape[1], -1)
        query_rotary = self.rotary_emb(output_timestamps, not torch.is_grad_enabled())
        queries = queries + self.dec_atn(queries, latents, query_rotary, latent_rotary)
        queries = queries + self.dec_ffn(queries)
        return self.readout(queries)

    def decode_embedded(
        self,
        token_embeddings: Tensor,
        token_timestamps: Tensor,
        session_index: Tensor,
        output_timestamps: Tensor,
        token_mask: Tensor | None = None,
        latent_map=None,
    ) -> Tensor:
        """Behaviour decoded from tokens given as embeddings rather than as spikes.

        The hook of analyses that feed POYO tokens of their own (the value tokens of
        :mod:`spikeinterface_poyo.analysis.bottleneck.poyo`): the tokens enter the encoder's
        cross-attention with rotary time exactly as spike tokens do, and the rest of the model
        (latents, self-attention, output queries, readout) is unchanged.

        Parameters
        ----------
        token_embeddings : Tensor
            (B, N, dim) the tokens' content, in place of unit plus token-type embeddings.
        token_timestamps : Tensor
            (B, N) token times in seconds from the window start.
        session_index : Tensor
            (B,) session vocabulary index of the output queries.
        output_timestamps : Tensor
            (B, M) times to decode at, in seconds from the window start.
        token_mask : Tensor or None
            (B, N) True for real tokens.
        latent_map : callable or None
            Applied to the (B, L, dim) latents after the encoder (cross-attention and its
            feed-forward), before the self-attention blocks; the result replaces them.

        Returns
        -------
        Tensor
            (B, M, dim_out) decoded behaviour, in the model's standardised units.
        """
        latent_index, latent_timestamps = self.latent_tokens(len(token_embeddings))
        latent_rotary = self.rotary_emb(latent_timestamps, not torch.is_grad_enabled())
        token_rotary = self.rotary_emb(token_timestamps, turning_only=True)
        latents = self._encode(self.latent_emb(latent_index), latent_rotary, token_embeddings, token_rotary,
                               token_mask, latent_map=latent_map)  # fmt: skip
        return self._read_behavior(latents, latent_rotary, session_index, output_timestamps)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---- the model protocol (see spikeinterface_poyo.models.base) ------------------------------
    @property
    def window_length(self) -> float:
        return self.sequence_length

    @property
    def context(self) -> str:
        """``"centred"`` or ``"causal"``: where the model was trained to read a time in its window."""
        return self.config.get("context", "centred")

    def get_config(self) -> dict:
        return {"architecture": self.config, "unit_vocab": self.unit_emb.vocab, "session_vocab": self.session_emb.vocab}

    def get_tensors(self) -> dict:
        return self.state_dict()

    @classmethod
    def from_saved(cls, config: dict, tensors: dict, meta: dict, family_version: int = 1) -> POYO:
        model = cls.build(config["architecture"], config["unit_vocab"], config["session_vocab"])
        load_state_checked(model, tensors, "the saved weights")
        model.meta = meta
        return model

    @classmethod
    def build(cls, architecture: dict, unit_vocab: list[str], session_vocab: list[str]) -> POYO:
        """An untrained model with a given architecture and vocabularies."""
        model = cls(**architecture)
        model.unit_emb.set_vocab(unit_vocab)
        model.session_emb.set_vocab(session_vocab)
        return model

    def to_device(self, device=None) -> POYO:
        """On ``device`` (CUDA when available, else the CPU), in eval mode."""
        return self.to(resolve_device(device)).eval()

    def session_units(self) -> dict[str, list[str]]:
        """Every session in the vocabulary, with the (un-namespaced) ids of its units."""
        sessions = self.session_emb.vocab[1:]
        units: dict[str, list[str]] = {s: [] for s in sessions}
        # longest session ids first, so "a/b" claims "a/b/7" before "a" does
        by_length = sorted(sessions, key=len, reverse=True)
        for word in self.unit_emb.vocab[1:]:
            for session in by_length:
                if word.startswith(session + "/"):
                    units[session].append(word[len(session) + 1 :])
                    break
        return units

    def predict_segment(
        self, tokens, timestamps, session_id, *, batch_size=16, n_jobs=None, progress_bar=False, context=None
    ):
        self.check_readout_trained()
        standardised = predict_tokens(
            self, tokens, timestamps, session_id, batch_size=batch_size, progress_bar=progress_bar, n_jobs=n_jobs,
            context=context,
        )  # fmt: skip
        return self.in_behavior_units(standardised, session_id)

    def check_readout_trained(self) -> None:
        """Refuse to decode with a behaviour readout that was never trained."""
        if "readout" in self.meta.get("training", {}).get("untrained", []):
            raise ValueError(
                "This model was pretrained without behaviour (objective='masked'): its behaviour readout is "
                "untrained. Adapt it to labelled behaviour first, for example sip.finetune(model, sorting, "
                "behavior, session_id='new', unlabelled='all')."
            )

    def in_behavior_units(self, standardised: np.ndarray, session_id: str) -> np.ndarray:
        """(..., dim_out) standardised predictions in the behaviour's units, by the session's
        training statistics (unchanged for a session trained without them)."""
        stats = self.meta.get("normalization", {}).get(session_id)
        if stats is None:
            return standardised
        return standardised * np.asarray(stats["std"]) + np.asarray(stats["mean"])
