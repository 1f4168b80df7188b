"""Masked modelling on spike tokens: POYO learns from spikes alone.

A window's spikes are counted in bins; a masking scheme (:mod:`..masking`: neuron, causal as a
hidden future, inter- and intra-region) hides some (bin, unit) entries, whose tokens are dropped
from the input; the encoding head predicts the scored entries' counts from what is left, and
the loss is their Poisson negative log-likelihood. Sessions need no behaviour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ...core.binning import count_matrix
from ...core.intervals import as_intervals, inside, intersect, split_intervals, subtract, total_seconds
from ...core.metrics import bits_per_spike
from ...core.spikes import SpikeTokens, sorting_to_tokens
from ...core.windows import sample_window_starts, tiling_starts
from ...training.config import TrainingConfig
from ...training.distributed import with_every_parameter
from ...training.trainer import steps_per_epoch
from ..masking import MTM_SCHEMES, SCHEMES, Mask, draw_mask, resolve_schemes, session_regions, session_schemes
from .tokenizer import collate_spike_windows, encoder_inputs

#: Bin of the counts the encoding head predicts (MtM's 20 ms).
BIN_SIZE = 0.02
#: Spike queries scored per window at most (a random subset of the scored entries beyond it).
MAX_QUERIES = 512
VALIDATION_SEED = 12345  # the validation masks are the same every epoch
VALIDATION_WINDOWS = 32


@dataclass
class SpikeSession:
    """One session segment for masked modelling: its spikes, the time to train and validate
    on, and its regions (from the sorting's ``brain_area``)."""

    tokens: SpikeTokens
    train_intervals: np.ndarray
    val_intervals: np.ndarray
    regions: dict

    @property
    def session_id(self) -> str:
        return self.tokens.session_id

    @property
    def train_seconds(self) -> float:
        return total_seconds(self.train_intervals)


def spike_sessions(
    sorting, session_id: str, window: float, val_fraction: float = 0.1, intervals=None, held_out=None
) -> list[SpikeSession]:
    """The segments of a sorting as :class:`SpikeSession` objects.

    Parameters
    ----------
    sorting : BaseSorting or SortingAnalyzer
        The spikes.
    session_id : str
        The session's name (namespaces its unit ids).
    window : float
        Window length in seconds; stretches shorter than a window are not used.
    val_fraction : float, default: 0.1
        The last part of the usable time kept for validation.
    intervals : array_like or None
        (K, 2) times to use; the whole of each segment by default.
    held_out : array_like or None
        (K, 2) times never to use (the time a decoder will be scored on).
    """
    out = []
    for tokens in sorting_to_tokens(sorting, session_id=session_id):
        usable = np.array([[tokens.start_time, tokens.end_time]])
        if intervals is not None:
            usable = intersect(as_intervals(intervals), tokens.start_time, tokens.end_time)
        if held_out is not None:
            usable = subtract(usable, held_out)
        usable = usable[usable[:, 1] - usable[:, 0] >= window]
        if not len(usable):
            continue
        train, val = split_intervals(usable, val_fraction)
        train = train[train[:, 1] - train[:, 0] >= window]
        val = val[val[:, 1] - val[:, 0] >= window]
        if len(train):
            area = tokens.unit_properties.get("brain_area")
            out.append(SpikeSession(tokens, train, val, session_regions(area)))
    if not out:
        raise ValueError(
            f"Session {session_id!r} has no stretch of {window:g} s to learn from"
            + (" outside the held-out time" if held_out is not None else "")
            + "; give it more time (or a shorter held_out)."
        )
    if not any(np.any(inside(s.tokens.times, s.train_intervals)) for s in out):
        raise ValueError(f"Session {session_id!r} has no spike in the time it would learn from; check the sorting.")
    return out


def window_counts(tokens: SpikeTokens, starts: np.ndarray, window: float, bin_size: float) -> np.ndarray:
    """(B, T, U) float32 spike counts of each window in bins of ``bin_size``."""
    num_bins = int(round(window / bin_size))
    lo = np.searchsorted(tokens.times, starts, side="left")
    hi = np.searchsorted(tokens.times, starts + window, side="left")
    return np.stack([count_matrix(tokens.times[a:b], tokens.unit_index[a:b], tokens.num_units, s, bin_size, num_bins)
                     for a, b, s in zip(lo, hi, starts)])  # fmt: skip


def spike_queries(scored: np.ndarray, vocab_index: np.ndarray, bin_size: float, rng=None, max_queries=None):
    """The scored (bin, unit) entries of each window as padded spike queries.

    Returns (B, Q) unit vocabulary index, bin-centre time, flat index into (T, U) and mask; at
    most ``max_queries`` per window, a random subset when there are more (``rng``).
    """
    batch, num_bins, num_units = scored.shape
    flat = scored.reshape(batch, -1)
    chosen = [np.flatnonzero(row) for row in flat]
    if max_queries is not None:
        chosen = [c if len(c) <= max_queries else np.sort(rng.choice(c, max_queries, replace=False)) for c in chosen]
    width = max(1, max(len(c) for c in chosen))
    entry = np.zeros((batch, width), np.int64)
    mask = np.zeros((batch, width), bool)
    for b, c in enumerate(chosen):
        entry[b, : len(c)], mask[b, : len(c)] = c, True
    units, bins = entry % num_units, entry // num_units
    return vocab_index[units], ((bins + 0.5) * bin_size).astype(np.float32), entry, mask


def masked_batch(model, tokens, vocab_index, starts, mask, counts, bin_size, rng=None, max_queries=None) -> dict:
    """Model inputs for windows under ``mask`` (its hidden tokens dropped), spike queries for
    its scored entries, and their ``target`` counts with the ``target_mask`` of real queries."""
    collated = collate_spike_windows(tokens, starts, model.sequence_length, vocab_index, hidden=mask.hidden,
                                     bin_size=bin_size)  # fmt: skip
    batch = encoder_inputs(model, collated)
    unit_index, times, entry, real = spike_queries(mask.scored, vocab_index, bin_size, rng, max_queries)
    target = np.take_along_axis(counts.reshape(len(starts), -1), entry, axis=1)
    device = model.device
    batch.update(
        rate_unit_index=torch.from_numpy(unit_index).to(device),
        rate_timestamps=torch.from_numpy(times).to(device),
        prompt_index=torch.full((len(starts),), SCHEMES.index(mask.scheme), device=device),
        target=torch.from_numpy(np.where(real, target, 0).astype(np.float32)).to(device),
        target_mask=torch.from_numpy(real).to(device),
    )
    return batch


def poisson_nll(log_rates_hz: torch.Tensor, counts: torch.Tensor, mask: torch.Tensor, bin_size: float):
    """Mean Poisson negative log-likelihood (without ``log k!``) of the real queries' counts."""
    log_expected = log_rates_hz + math.log(bin_size)
    nll = log_expected.exp() - counts * log_expected
    return (nll * mask).sum() / mask.sum().clamp(min=1)


class MaskedSpikesTask:
    """Masked modelling on spike tokens as a
    :class:`~spikeinterface_poyo.training.trainer.TrainingTask`: one session and one scheme per
    batch (sessions in proportion to their training time, schemes uniformly among those the
    session supports), Poisson loss on the scored entries, and minus the Poisson NLL of fixed
    validation masks as the score.

    Parameters
    ----------
    model : POYO
        A model with an encoding head and every session's units in its vocabulary.
    sessions : list of SpikeSession
        This process's sessions.
    config : TrainingConfig
        Batch size and epoch length.
    world_size : int, default: 1
        Processes sharing each batch.
    schemes : str or list, default: "mtm"
        Masking schemes (:func:`~..masking.resolve_schemes`); ``temporal`` is allowed too.
    mask_ratio : float, default: 0.3
        Fraction of units (or bins) masked.
    total_train_seconds : float or None
        Training time of the whole corpus (all processes); this process's by default.
    """

    score_name = "neg_masked_nll"

    def __init__(
        self,
        model,
        sessions: list[SpikeSession],
        config: TrainingConfig,
        world_size: int = 1,
        schemes=MTM_SCHEMES,
        mask_ratio: float = 0.3,
        total_train_seconds=None,
    ):
        if model.encoding_head is None:
            raise ValueError("Masked training needs a model with an encoding head (model.add_encoding_head()).")
        self.model, self.sessions, self.mask_ratio = model, sessions, float(mask_ratio)
        self.bin_size = BIN_SIZE
        self.requested = resolve_schemes(schemes)
        self.schemes = [session_schemes(self.requested, s.regions, s.session_id) for s in sessions]
        self.vocab = [np.asarray(model.unit_emb.tokenizer(s.tokens.unit_ids), dtype=np.int64) for s in sessions]
        self.local_batch = max(1, config.batch_size // world_size)
        seconds = np.array([s.train_seconds for s in sessions])
        self.weights = seconds / seconds.sum()
        total = total_train_seconds if total_train_seconds is not None else seconds.sum()
        window = model.sequence_length
        self.steps_per_epoch = steps_per_epoch(total, window, config.batch_size, config.windows_per_epoch)

    def draw(self, k: int, starts: np.ndarray, rng: np.random.Generator, scheme: str | None = None):
        """Counts and a mask of one scheme (random among the session's by default) for windows."""
        session = self.sessions[k]
        counts = window_counts(session.tokens, starts, self.model.sequence_length, self.bin_size)
        scheme = scheme or self.schemes[k][rng.integers(len(self.schemes[k]))]
        mask = draw_mask(scheme, counts.shape, session.regions, rng, self.mask_ratio, future=True)
        return counts, mask

    def loss(self, net, rng, step_in_epoch) -> torch.Tensor:
        k = rng.choice(len(self.sessions), p=self.weights)
        session = self.sessions[k]
        starts = sample_window_starts(session.train_intervals, self.model.sequence_length, self.local_batch, rng)
        counts, mask = self.draw(k, starts, rng)
        batch = masked_batch(self.model, session.tokens, self.vocab[k], starts, mask, counts, self.bin_size, rng,
                             MAX_QUERIES)  # fmt: skip
        target, real = batch.pop("target"), batch.pop("target_mask")
        return with_every_parameter(poisson_nll(net(**batch), target, real, self.bin_size), self.model)

    @torch.no_grad()
    def validate(self) -> tuple[float, int]:
        """Minus the mean Poisson NLL of fixed masks over the validation windows, per session."""
        total, count = 0.0, 0
        was_training = self.model.training
        self.model.eval()
        window = self.model.sequence_length
        for k, session in enumerate(self.sessions):
            starts = tiling_starts(session.val_intervals, window)[:VALIDATION_WINDOWS]
            if not len(starts):
                continue
            rng = np.random.default_rng(VALIDATION_SEED)
            nll = []
            for scheme in self.schemes[k]:
                counts, mask = self.draw(k, starts, rng, scheme)
                batch = masked_batch(self.model, session.tokens, self.vocab[k], starts, mask, counts, self.bin_size)
                target, real = batch.pop("target"), batch.pop("target_mask")
                nll.append(float(poisson_nll(self.model(**batch), target, real, self.bin_size)))
            total += -float(np.mean(nll))
            count += 1
        self.model.train(was_training)
        return total, count

    def start_epoch(self, rng) -> None:
        pass

    def identity(self) -> dict:
        return {
            "architecture": self.model.config,
            "unit_vocab": self.model.unit_emb.vocab,
            "session_vocab": self.model.session_emb.vocab,
            "masking": {"schemes": list(self.requested), "mask_ratio": self.mask_ratio, "bin_size": self.bin_size},
        }

    def sampler_state(self) -> dict:
        return {}

    def load_sampler_state(self, state: dict) -> None:
        pass


class JointTask:
    """Behaviour decoding and masked modelling at once (``objective="both"``): each step adds
    the decoding loss of a labelled batch and the masked loss of a batch from any session;
    validation (early stopping) is the decoding task's R². Under torchrun a process without a
    labelled session (``decoding=None``) takes the masked loss alone, for as many steps."""

    score_name = "r2"

    def __init__(self, decoding, masked: MaskedSpikesTask, steps_per_epoch: int):
        self.decoding, self.masked, self.model = decoding, masked, masked.model
        self.steps_per_epoch = steps_per_epoch

    def loss(self, net, rng, step_in_epoch) -> torch.Tensor:
        loss = self.masked.loss(net, rng, step_in_epoch)
        return loss if self.decoding is None else loss + self.decoding.loss(net, rng, step_in_epoch)

    def validate(self) -> tuple[float, int]:
        return (0.0, 0) if self.decoding is None else self.decoding.validate()

    def start_epoch(self, rng) -> None:
        pass

    def identity(self) -> dict:
        return {"masked": self.masked.identity(), "objective": "both"}

    def sampler_state(self) -> dict:
        return {}

    def load_sampler_state(self, state: dict) -> None:
        pass


@torch.no_grad()
def encoding_bits_per_spike(
    model, sorting, session_id: str, intervals, mask_ratio: float = 0.3, batch_size: int = 8
) -> dict:
    """Bits per spike of the encoding head on ``intervals`` of a session, co-smoothing style:
    the units are split into groups of ``mask_ratio`` of them, each group's tokens dropped in
    turn and its counts predicted from the other units (``neuron`` prompt), in non-overlapping
    windows tiling the intervals. The null is each unit's mean count there
    (:func:`~spikeinterface_poyo.core.metrics.bits_per_spike`).

    Returns
    -------
    dict
        ``mean`` (per neuron, averaged), ``pooled``, ``n_excluded`` and ``per_neuron``.
    """
    if model.encoding_head is None:
        raise ValueError("The model has no encoding head; train it with objective='masked' or 'both'.")
    model.eval()
    window = model.sequence_length
    counts_all, predicted_all = [], []
    for tokens in sorting_to_tokens(sorting, session_id=session_id):
        vocab = np.asarray(model.unit_emb.tokenizer(tokens.unit_ids), dtype=np.int64)
        starts = tiling_starts(intersect(as_intervals(intervals), tokens.start_time, tokens.end_time), window)
        groups = np.array_split(np.random.default_rng(0).permutation(tokens.num_units),
                                max(1, int(round(1 / mask_ratio))))  # fmt: skip
        for first in range(0, len(starts), batch_size):
            chunk = starts[first : first + batch_size]
            counts = window_counts(tokens, chunk, window, BIN_SIZE)
            predicted = np.zeros_like(counts)
            for group in groups:
                hidden = np.zeros(counts.shape, bool)
                hidden[:, :, group] = True
                mask = Mask("neuron", hidden, hidden)
                batch = masked_batch(model, tokens, vocab, chunk, mask, counts, BIN_SIZE)
                batch.pop("target"), batch.pop("target_mask")
                entry = np.flatnonzero(hidden[0])  # the group in every bin: the same queries in each window
                predicted.reshape(len(chunk), -1)[:, entry] = (model(**batch).exp() * BIN_SIZE).cpu().numpy()
            counts_all.append(counts.reshape(-1, tokens.num_units))
            predicted_all.append(predicted.reshape(-1, tokens.num_units))
    if not counts_all:
        raise ValueError(f"No {window:g} s window of session {session_id!r} lies inside the intervals to score.")
    return bits_per_spike(np.concatenate(counts_all), np.concatenate(predicted_all))
