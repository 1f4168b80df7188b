"""The package's decoders with a bottleneck of width k between the binned input and their own layers.

:class:`BottleneckDecoder` takes a decoder (``"wiener"``, ``"mlp"``, ``"gru"``, ``"poyo"`` or an
instance of one, whose settings it keeps) and trains it with ``z_t = W x_t + b`` in front, on the
baselines' standardised square-root counts, through the baselines' own training loop. The Wiener
filter has no layers to put a bottleneck before: with one it becomes its linear form trained by
Adam, a reduced-rank regression. POYO reads the k channels as value tokens (:mod:`.poyo`), and
can instead have its latent tokens squeezed (``bottleneck="latent"``, a different quantity).
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import torch
from torch import nn

from ...models.baselines import GRUDecoder, MLPDecoder, WienerFilter
from ...models.baselines.neural import NeuralDecoder
from ...training.config import TrainingConfig
from .layers import MODES, Bottlenecked, LinearBottleneck, LinearReadout, identity_map, pca_map
from .poyo import BinnedPOYO, as_binned_poyo

#: Decoders that take a bottleneck, by name.
SUPPORTED = {"wiener": WienerFilter, "mlp": MLPDecoder, "gru": GRUDecoder, "poyo": BinnedPOYO}
#: Placements of the map: one of :data:`~.layers.MODES` (on the inputs), the squeeze of POYO's latent
#: tokens, or no bottleneck at all.
BOTTLENECKS = (*MODES, "latent", "none")
#: What the decoder reads: the spikes, or uniform noise in their place (the random baseline).
INPUTS = ("spikes", "noise")
#: Settings of the training loop that ``training=`` may change.
TRAINING_KEYS = ("lr", "weight_decay", "batch_size", "max_epochs", "patience", "val_fraction", "max_time_s", "schedule")
#: How the Wiener filter's linear form is trained (the filter itself is solved in closed form and has
#: no such settings): Adam without weight decay, annealed so that it settles at the optimum.
LINEAR_TRAINING = dict(lr=1e-2, weight_decay=0.0, batch_size=256, max_epochs=100, patience=20, max_time_s=None,
                       schedule="one_cycle")  # fmt: skip


def decoder_template(decoder):
    """A fresh, unfitted decoder on binned counts with the settings of ``decoder`` (a name or an
    instance; a POYO becomes a :class:`~.poyo.BinnedPOYO`)."""
    poyo = as_binned_poyo(decoder)
    if poyo is not None:
        poyo.check_backbone()  # a backbone that cannot be built fails before any training
        return poyo
    if isinstance(decoder, str):
        name = decoder.lower()
        if name not in SUPPORTED:
            raise ValueError(f"Unknown decoder {decoder!r}; bottleneck curves support {sorted(SUPPORTED)}.")
        return SUPPORTED[name]()
    if isinstance(decoder, BottleneckDecoder):
        raise ValueError("This decoder already has a bottleneck; pass the decoder without one (its .decoder).")
    if isinstance(decoder, tuple(SUPPORTED.values())):
        return type(decoder)(**decoder.get_params())
    raise ValueError(
        f"A {type(decoder).__name__} cannot take a bottleneck: the bottleneck goes between the binned counts and "
        "the decoder's layers, so it needs a decoder on binned counts. Pass one of "
        f"{sorted(SUPPORTED)}, an instance of WienerFilter, MLPDecoder or GRUDecoder, or a POYO (model or POYODecoder)."
    )


def check_placement(template, bottleneck: str) -> None:
    """Refuse the latent squeeze for a decoder that has no latent tokens."""
    if bottleneck == "latent" and not isinstance(template, BinnedPOYO):
        raise ValueError(
            "bottleneck='latent' squeezes POYO's latent tokens; a "
            f"{type(template).__name__} has none. Use decoder='poyo' (or a POYO model), or bottleneck='learned'."
        )


class BottleneckDecoder(NeuralDecoder):
    """A baseline decoder with a linear bottleneck of width ``k`` in front, trained jointly.

    At every bin (and every lag) the N standardised square-root counts ``x_t`` become
    ``z_t = W x_t + b`` with W of shape (k, N), and the decoder's own layers read ``z`` instead of
    ``x``: the MLP flattens the bins of z, the GRU runs over them, the Wiener filter maps them
    linearly (a reduced-rank regression), and POYO reads channel j of each bin as a value token
    at the bin centre (:class:`~.poyo.BinnedPOYO`). W starts from ``nn.Linear``'s standard
    initialisation and is trained with the decoder by the baselines' loop (AdamW, early stopping
    on the last ``val_fraction`` of the training time).

    Parameters
    ----------
    decoder : {"wiener", "mlp", "gru", "poyo"}, WienerFilter, MLPDecoder, GRUDecoder, BinnedPOYO or a POYO
        The decoder, by name (its defaults) or as an instance whose settings (bins, lags, layers,
        training) are kept; a POYO model or a fitted ``POYODecoder`` is the backbone of a
        :class:`~.poyo.BinnedPOYO` (with ``freeze_backbone=True``, pass a ``BinnedPOYO``).
    k : int, default: 2
        Width of the bottleneck (at most the number of units; for ``"latent"``, at most POYO's dim).
    bottleneck : {"learned", "identity", "pca", "latent", "none"}, default: "learned"
        ``"learned"``: W trained with the decoder; ``"identity"``: W = I (k = N, the ceiling);
        ``"pca"``: W fixed to the first k principal axes of the training inputs (unsupervised);
        ``"latent"`` (POYO only): no W, every latent token of POYO squeezed to k numbers after its
        encoder (the width of its internal channel, not BrainBits' k); ``"none"``: no bottleneck
        at all (the decoder as it is).
    inputs : {"spikes", "noise"}, default: "spikes"
        ``"noise"`` replaces every input by uniform noise, before standardisation (the random
        baseline of BrainBits).
    training : dict or None, default: None
        Changes to the training settings (keys of :data:`TRAINING_KEYS`). The MLP, GRU and POYO
        start from their own settings, the Wiener filter's linear form from :data:`LINEAR_TRAINING`.
    seed : int, default: 0
        Seed of initialisation, shuffling, dropout and noise inputs (the decoder's own seed is
        not used).
    device : str, torch.device or None
        Defaults to CUDA when available, else CPU.

    Attributes
    ----------
    map_ : np.ndarray or None
        The (k, N) map W on the standardised inputs (None without a bottleneck).
    network_ : torch.nn.Module
        Bottleneck and decoder.
    """

    family = None  # an analysis model: not saved as a family of its own

    def __init__(self, decoder="mlp", k: int = 2, bottleneck: str = "learned", inputs: str = "spikes",
                 training: dict | None = None, seed: int = 0, device=None):  # fmt: skip
        super().__init__(decoder=decoder, k=k, bottleneck=bottleneck, inputs=inputs, training=training, seed=seed,
                         device=device)  # fmt: skip

    # ---- settings ---------------------------------------------------------------------------
    def _resolve(self) -> None:
        """Settle the decoder's settings and the training ones on this object, checked."""
        if self.bottleneck not in BOTTLENECKS:
            raise ValueError(f"bottleneck must be one of {BOTTLENECKS}, got {self.bottleneck!r}.")
        if self.inputs not in INPUTS:
            raise ValueError(f"inputs must be one of {INPUTS}, got {self.inputs!r}.")
        sized = self.bottleneck in ("learned", "pca", "latent")
        if sized and (not isinstance(self.k, (int, np.integer)) or self.k < 1):
            raise ValueError(f"k must be a positive integer, got {self.k!r}.")
        template = decoder_template(self.decoder)
        check_placement(template, self.bottleneck)
        params = template.get_params()
        changes = dict(self.training or {})
        unknown = sorted(set(changes) - set(TRAINING_KEYS))
        if unknown:
            raise ValueError(f"training= has unknown settings {unknown}; it takes {list(TRAINING_KEYS)}.")
        if isinstance(template, WienerFilter):
            training = dict(LINEAR_TRAINING, val_fraction=params["val_fraction"])
        else:
            training = {key: params[key] for key in TRAINING_KEYS if key != "schedule"}
            training["schedule"] = "constant"  # the baselines' own schedule
        training.update(changes)
        self.template_ = template
        self.bin_size, self.lags, self.leads = params["bin_size"], params["lags"], params.get("leads", 0)
        self.session_id = params.get("session_id", "session")
        for key, value in training.items():
            setattr(self, key, value)

    def training_config(self) -> TrainingConfig:
        return dataclasses.replace(super().training_config(), schedule=self.schedule)

    # ---- the network ------------------------------------------------------------------------
    def _decoder_network(self, width: int, dim_out: int) -> nn.Module:
        if isinstance(self.template_, WienerFilter):
            return LinearReadout((self.lags + self.leads) * width, dim_out)
        return self.template_._network(width, dim_out)

    def _build_network(self, x_train: torch.Tensor, dim_out: int) -> nn.Module:
        num_units = x_train.shape[-1]
        if self.bottleneck == "none":
            return self._decoder_network(num_units, dim_out)
        if self.bottleneck == "latent":  # every unit read, POYO's latents squeezed
            return self.template_._network(num_units, dim_out, latent_width=int(self.k))
        width = num_units if self.bottleneck == "identity" else int(self.k)
        if width > num_units:
            raise ValueError(f"k = {width} is more than the {num_units} units; take k <= {num_units}.")
        # the decoder first, so that with W = I it draws the same initial weights as without a bottleneck
        network = self._decoder_network(width, dim_out)
        fixed = {"identity": lambda: identity_map(num_units), "pca": lambda: pca_map(x_train, width)}
        bottleneck = LinearBottleneck(num_units, width, fixed[self.bottleneck]() if self.bottleneck in fixed else None)
        return Bottlenecked(bottleneck, network)

    def _history(self, tokens, timestamps: np.ndarray) -> np.ndarray:
        if self.inputs == "noise":
            shape = (len(timestamps), self.lags + self.leads, tokens.num_units)
            # seeded by the times too, so training and test draw different noise
            stream = zlib.crc32(np.ascontiguousarray(timestamps, dtype=np.float64).tobytes())
            return np.random.default_rng([int(self.seed), stream]).random(shape, dtype=np.float32)
        return super()._history(tokens, timestamps)

    def _fit_arrays(self, tokens, t, y) -> None:
        self._resolve()
        super()._fit_arrays(tokens, t, y)

    def _forward_all(self, x: torch.Tensor, chunk: int | None = None) -> np.ndarray:
        # as many samples at a time as the decoder predicts itself (POYO's samples are windows of tokens)
        chunk = chunk or getattr(self.template_, "predict_chunk", None)
        return super()._forward_all(x) if chunk is None else super()._forward_all(x, chunk)

    # ---- what analyses read -----------------------------------------------------------------
    @property
    def map_(self) -> np.ndarray | None:
        if not isinstance(self.network_, Bottlenecked):
            return None
        return self.network_.bottleneck.weight.detach().cpu().numpy().astype(np.float64)

    def fit_samples(self, tokens, timestamps: np.ndarray, values: np.ndarray):
        """Fit on spike tokens and behaviour samples ``values`` (T, D) at ``timestamps`` (all used,
        the last ``val_fraction`` for early stopping); returns ``self``. For sweeps over spikes that
        are not a sorting (circularly shifted ones); :meth:`fit` takes a sorting and a Behavior."""
        self._fit_arrays(tokens, np.asarray(timestamps, dtype=np.float64), np.asarray(values, dtype=np.float64))
        return self

    def predict_samples(self, tokens, timestamps: np.ndarray) -> np.ndarray:
        """(T, D) predictions in behaviour units from spike tokens, at ``timestamps``."""
        return self._predict_arrays(tokens, np.asarray(timestamps, dtype=np.float64))

    def features(self, tokens, timestamps: np.ndarray) -> torch.Tensor:
        """(T, bins, N) standardised inputs the network reads (before the bottleneck)."""
        return self._standardise(self._history(tokens, np.asarray(timestamps, dtype=np.float64)))

    def predict_features(self, x: torch.Tensor) -> np.ndarray:
        """(T, D) predictions in behaviour units from standardised inputs (see :meth:`features`)."""
        return self._forward_all(torch.as_tensor(x, dtype=torch.float32)) * self.y_scale_ + self.y_mean_
