"""The EIT decoder of continuous behaviour (family ``"eit"``), and its transfer to another animal."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ...core.binning import binned_counts
from ...core.spikes import single_segment_tokens
from ..base import NotFittedError
from ..baselines.neural import NeuralDecoder, SampleTask
from .network import EITNetwork, IndividualModule, IndividualReadout, PopulationModule


class EITTask(SampleTask):
    """EIT's loss: the population output's error plus ``auxiliary_weight`` times the individual path's."""

    criterion = staticmethod(nn.functional.mse_loss)

    def __init__(self, *args, auxiliary_weight: float = 0.5, **kwargs):
        super().__init__(*args, **kwargs)
        self.auxiliary_weight = auxiliary_weight

    def loss(self, net, rng, step_in_epoch) -> torch.Tensor:
        index = torch.from_numpy(self.order[step_in_epoch * self.batch_size : (step_in_epoch + 1) * self.batch_size])
        x, z = self.x[index.to(self.x.device)], self.z[index.to(self.z.device)]
        population, individual = net.outputs(x)
        auxiliary = self.criterion(individual, z)
        if population is None:  # transferred without a population module: the individual path decodes
            return auxiliary
        return self.criterion(population, z) + self.auxiliary_weight * auxiliary


class EITClassificationTask(EITTask):
    """The same loss in cross-entropy over classes; validation scores the accuracy."""

    score_name = "accuracy"
    criterion = staticmethod(nn.functional.cross_entropy)

    def validate(self) -> tuple[float, int]:
        return float(np.mean(self.forward_all(self.x_val).argmax(axis=1) == self.z_val)), 1


class EITDecoder(NeuralDecoder):
    """EIT (Liu et al., NeurIPS 2022): an individual transformer over each neuron's own counts,
    shared by every neuron, then a population transformer across the neurons.

    The inputs are the counts of each unit in the ``lags`` bins of ``bin_size`` ending at the
    decoded time (causal), centred by the training mean of each unit (not scaled; the reference
    centres each split by its own mean, which leaks test statistics). The individual module
    (``Linear(1 -> dim)``, a pre-norm transformer over time, a projection to one number per bin)
    is the same for every unit, so it runs on any number of units and transfers to another
    animal with no unit correspondence (:meth:`transfer_from`). The population module adds a
    learned embedding per unit, runs a transformer whose tokens are the units at one bin,
    projects each to one number and maps the N numbers to the behaviour. The output at the bin
    ending at the decoded time is the decoded value. The loss adds ``auxiliary_weight`` times the
    error of a linear readout of the individual projections (the paper's auxiliary path).

    Parameters
    ----------
    bin_size : float, default: 0.1
        Bin width in seconds (the paper's 100 ms).
    lags : int, default: 8
        Bins in a window, ending at the decoded time (the paper's 8).
    window : float or None, default: None
        The window in seconds instead of ``lags``; it must be a whole number of bins.
    dim : int, default: 16
        Width of each unit's latent per bin.
    depth, heads, head_dim, ff_dim : int, default: 2, 6, 64, 32
        The individual transformer (the reference's).
    population_depth, population_heads, population_ff_dim : int, default: 2, 6, 16
        The population transformer (the reference's).
    population_dropout : float, default: 0.5
        Dropout inside the population transformer.
    neuron_dropout : float, default: 0.5
        Dropout on the N numbers before both readouts.
    attention_residual : bool, default: False
        Keep a residual around the individual transformer's attention. The reference has none
        (the stream is replaced by the attention's output); True is the standard block.
    time_embedding : bool, default: False
        Add a learned embedding per bin in the individual transformer (the reference has none).
    causal : bool, default: False
        Causal attention over time in the individual transformer: each bin's latent sees only
        earlier bins. The decoded value is read at the window's last bin either way, so the
        decoder is causal in its inputs; the option makes every bin's output causal too.
    auxiliary_weight : float, default: 0.5
        Weight of the individual path's loss (the paper's 0.5).
    population : bool, default: True
        Whether there is a population module; without it the individual path's readout decodes
        (the reference's transfer).
    freeze_individual : bool, default: False
        Keep the individual module fixed while training (set by :meth:`transfer_from`; with a fresh
        module, the control that shows whether a pretrained one helps).
    lr : float, default: 1e-3
        AdamW learning rate (the reference trains with Adam at 1e-4 for 400 epochs).
    weight_decay : float, default: 0
        AdamW weight decay (the reference has none).
    batch_size : int, default: 128
        Windows per step (the reference's 128).
    max_epochs, patience, val_fraction, max_time_s, seed, device, session_id, leads
        As for the other neural decoders (:class:`~spikeinterface_poyo.GRUDecoder`).
    """

    family = "eit"
    task_class = EITTask

    def __init__(
        self,
        bin_size: float = 0.1,
        lags: int = 8,
        window: float | None = None,
        dim: int = 16,
        depth: int = 2,
        heads: int = 6,
        head_dim: int = 64,
        ff_dim: int = 32,
        population_depth: int = 2,
        population_heads: int = 6,
        population_ff_dim: int = 16,
        population_dropout: float = 0.5,
        neuron_dropout: float = 0.5,
        attention_residual: bool = False,
        time_embedding: bool = False,
        causal: bool = False,
        auxiliary_weight: float = 0.5,
        population: bool = True,
        freeze_individual: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 128,
        max_epochs: int = 100,
        patience: int = 10,
        val_fraction: float = 0.1,
        max_time_s: float | None = None,
        seed: int = 0,
        device=None,
        session_id: str = "session",
        leads: int = 0,
    ):
        super().__init__(**{k: v for k, v in locals().items() if k not in ("self", "__class__")})

    @classmethod
    def transfer_from(cls, source: EITDecoder, population: bool = False, **settings) -> EITDecoder:
        """A decoder for another session (or animal) that reuses ``source``'s individual module, frozen.

        As the reference transfers: the individual module and its projection are kept bit for
        bit, and only a new readout of the projections is fitted on the target session; with
        ``population=True`` (beyond the paper) a new population module is trained too. The bins
        are the source's; other settings (training, seed, session id) can be given.
        """
        if not hasattr(source, "network_"):
            raise ValueError("The transfer source is not fitted; fit it (or load a saved EIT) first.")
        if "bin_size" in settings and not np.isclose(settings["bin_size"], source.bin_size):
            raise ValueError(
                f"The source counts spikes in bins of {source.bin_size:g} s, not {settings['bin_size']:g} s: its "
                "individual module reads counts per bin of its own width. Transfer with the source's bin size."
            )
        architecture = {k: v for k, v in source.get_params().items() if k not in ("population", "freeze_individual")}
        decoder = cls(**{**architecture, **settings, "population": population, "freeze_individual": True})
        decoder.source_individual_ = copy.deepcopy(source.network_.individual).cpu()
        return decoder

    adaptation = "sip.EITDecoder.transfer_from(model).fit(sorting, behavior)"
    _other_units_advice = f"For other units, fit {adaptation}."

    # ---- inputs and network -----------------------------------------------------------------
    @property
    def num_lags(self) -> int:
        """Bins in a window: ``lags``, or ``window`` in bins of ``bin_size``."""
        if self.window is None:
            return int(self.lags)
        bins = self.window / self.bin_size
        if bins < 1 or not np.isclose(bins, round(bins)):
            raise ValueError(
                f"A window of {self.window:g} s is not a whole number of {self.bin_size:g} s bins ({bins:.3g}). "
                f"Choose a window that is a multiple of bin_size, or give lags instead."
            )
        return int(round(bins))

    @property
    def window_length(self) -> float:
        return self.bin_size * (self.num_lags + self.leads)

    def _history(self, tokens, timestamps: np.ndarray) -> np.ndarray:
        """(T, lags + leads, U) counts per bin, oldest first (EIT reads counts, not their square root)."""
        return binned_counts(tokens, timestamps, self.bin_size, self.num_lags, self.leads)

    def _fit_arrays(self, tokens, t, y) -> None:
        span = tokens.end_time - tokens.start_time
        if span < self.window_length:
            raise ValueError(
                f"The sorting spans {span:.3g} s, shorter than one window ({self.num_lags} bins of {self.bin_size:g} s "
                f"= {self.window_length:g} s). Give a longer recording, or fewer lags or smaller bins."
            )
        super()._fit_arrays(tokens, t, y)

    def _input_scale(self, train: np.ndarray) -> np.ndarray:
        return np.ones(train.shape[-1])  # centred only, as the reference

    def _network(self, num_units: int, dim_out: int) -> nn.Module:
        bins = self.num_lags + self.leads
        individual = IndividualModule(
            bins, self.dim, self.depth, self.heads, self.head_dim, self.ff_dim,
            attention_residual=self.attention_residual, time_embedding=self.time_embedding, causal=self.causal,
        )  # fmt: skip
        if getattr(self, "source_individual_", None) is not None:
            individual.load_state_dict(self.source_individual_.state_dict())
        population = None
        if self.population:
            population = PopulationModule(
                num_units, dim_out, self.dim, self.population_depth, self.population_heads, self.head_dim,
                self.population_ff_dim, self.population_dropout, self.neuron_dropout,
            )  # fmt: skip
        readout = IndividualReadout(num_units, dim_out, self.neuron_dropout)
        return EITNetwork(individual, population, readout, read_bin=self.num_lags - 1, frozen=self.freeze_individual)

    def _task_settings(self) -> dict:
        return {"auxiliary_weight": self.auxiliary_weight}

    # ---- what the individual module sees ----------------------------------------------------
    @torch.no_grad()
    def individual_latents(self, sorting, timestamps) -> tuple[np.ndarray, np.ndarray]:
        """The individual module's view of each unit in the windows ending at ``timestamps``.

        Runs on any sorting (any units: the module is shared by all of them). Each unit's counts
        are centred by its own mean over the given windows, as the model centres by the
        training mean.

        Returns
        -------
        latents : (T, U, bins, dim) ndarray
        projections : (T, U, bins) ndarray
        """
        if not hasattr(self, "network_"):
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet; fit or load one first.")
        raw = self._history(single_segment_tokens(sorting), np.asarray(timestamps, dtype=np.float64))
        x = torch.from_numpy((raw - raw.mean(axis=(0, 1))).astype(np.float32))
        individual = self.network_.individual.eval()
        out = [individual(x[i : i + 1024].to(self.device_)) for i in range(0, len(x), 1024)]
        return tuple(torch.cat([o[k] for o in out]).cpu().numpy() for k in range(2))


class EITClassifier(EITDecoder):
    """EIT classifying a discrete behaviour (the paper's reach direction; family ``"eit_classifier"``).

    The same model as :class:`EITDecoder`, trained with cross-entropy; the behaviour is one
    column of integer class labels (for example each trial's target, at the trial's end, with a
    ``window`` covering the trial). Predictions are the most probable class;
    :meth:`predict_proba` gives the probabilities, in the order of ``classes_``, and
    :meth:`score` the accuracy. The parameters are :class:`EITDecoder`'s.
    """

    family = "eit_classifier"
    task_class = EITClassificationTask

    def _encode_targets(self, y: np.ndarray, cut: int) -> torch.Tensor:
        labels = _class_labels(y)
        self.classes_ = np.unique(labels[:cut])
        unseen = np.setdiff1d(np.unique(labels), self.classes_)
        if len(unseen):
            raise ValueError(
                f"Class(es) {unseen.tolist()} appear only in the last {self.val_fraction:.0%} of the samples "
                "(validation), never in training. Give samples of every class early enough (interleave the trials), "
                "or lower val_fraction."
            )
        if len(self.classes_) < 2:
            raise ValueError(f"Only one class ({self.classes_[0]}) in the training samples; a classifier needs two.")
        return torch.from_numpy(np.searchsorted(self.classes_, labels))

    def _decode_outputs(self, z: np.ndarray) -> np.ndarray:
        return self.classes_[z.argmax(axis=1)][:, None].astype(np.float64)

    def _output_width(self) -> int:
        return len(self.classes_)

    def _target_arrays(self) -> dict:
        return {"classes": self.classes_}

    def _restore_targets(self, arrays: dict) -> None:
        self.classes_ = arrays["classes"]

    def predict_proba(self, sorting, timestamps, session_id: str | None = None) -> np.ndarray:
        """(T, classes) probability of each class in ``classes_`` at ``timestamps`` (seconds)."""
        session = self.resolve_session(sorting, session_id)
        tokens = self._fitted_units(single_segment_tokens(sorting, session), session)
        logits = self._forward_all(self._standardise(self._history(tokens, np.asarray(timestamps, dtype=np.float64))))
        return torch.from_numpy(logits).softmax(dim=1).numpy()

    def score(self, sorting, behavior, session_id: str | None = None) -> float:
        """Accuracy of the predicted classes at ``behavior``'s timestamps."""
        labels = _class_labels(behavior.values)
        unseen = np.setdiff1d(np.unique(labels), self.classes_)
        if len(unseen):
            raise ValueError(
                f"Class(es) {unseen.tolist()} were never seen in training (classes {self.classes_.tolist()}); "
                "score on samples of the trained classes."
            )
        decoded = self.predict(sorting, behavior.timestamps, session_id=session_id, progress_bar=False)
        return float(np.mean(decoded.values[:, 0] == labels))


def _class_labels(y: np.ndarray) -> np.ndarray:
    """(T,) integer labels from one column of behaviour; an error for anything else."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 2 and y.shape[1] != 1:
        raise ValueError(f"A classifier takes one column of class labels; this behaviour has {y.shape[1]} columns.")
    y = y.reshape(-1)
    if not np.all(np.isfinite(y)) or not np.allclose(y, np.round(y)):
        raise ValueError("Class labels must be whole numbers (e.g. the trial's target 0-7); these are not.")
    return np.round(y).astype(np.int64)
