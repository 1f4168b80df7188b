"""POYO's training task for the shared :class:`~spikeinterface_poyo.training.trainer.Trainer`:
random windows of a random session (in proportion to its training time), unit dropout, masked
mean squared error on standardised behaviour, and validation R².

A causal model (``model.context == "causal"``) is read at the end of its window when decoding:
its training queries in the last ``latent_step`` of each window weigh ``sequence_length /
latent_step`` in the loss (about as much as all the others together), and it is validated by
causal decoding. The other queries stay in the loss: with the edge's few queries alone (2 or 3
a window at 20 Hz), learning was much slower on real M1 data."""

from __future__ import annotations

import numpy as np
import torch

from ...core.intervals import inside
from ...core.metrics import r2_score
from ...core.sessions import SessionData, SessionStore
from ...core.windows import edge_weights, sample_window_starts, window_queries
from ...training.config import TrainingConfig
from ...training.trainer import steps_per_epoch
from .predict import predict_tokens
from .tokenizer import collate_spike_windows, encoder_inputs


def unit_dropout_mask(num_windows: int, num_units: int, max_drop: float, rng: np.random.Generator) -> np.ndarray:
    """(B, U) keep-mask dropping a random fraction (up to ``max_drop``) of units per window."""
    if max_drop <= 0 or num_units < 2:
        return np.ones((num_windows, num_units), dtype=bool)
    keep_counts = np.ceil(num_units * (1 - max_drop * rng.random(num_windows))).astype(int)
    ranks = np.argsort(np.argsort(rng.random((num_windows, num_units)), axis=1), axis=1)
    return ranks < keep_counts[:, None]


def make_batch(model, session: SessionData, vocab_index, starts, keep_units) -> dict[str, torch.Tensor]:
    """Model inputs plus ``target`` and ``target_mask`` (boolean; for a causal model, float loss
    weights) for windows of one session."""
    window = model.sequence_length
    batch = encoder_inputs(model, collate_spike_windows(session.tokens, starts, window, vocab_index, keep_units))
    index, mask, relative = window_queries(session.behavior.timestamps, starts, window)
    target = session.targets[index]
    mask = mask & np.all(np.isfinite(target), axis=-1)
    if model.context == "causal":  # a weighted mask: the queries at the window's end count most
        mask = mask * edge_weights(relative, window, model.latent_step)
    device = model.device
    batch.update(
        session_index=torch.full((len(starts),), model.session_emb.tokenizer(session.session_id), device=device),
        output_timestamps=torch.from_numpy(relative).to(device),
        target=torch.from_numpy(np.nan_to_num(target).astype(np.float32)).to(device),
        target_mask=torch.from_numpy(mask).to(device),
    )
    return batch


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the real (unmasked) queries; a float ``mask`` weighs them."""
    err = ((pred - target) ** 2).mean(dim=-1)
    return (err * mask).sum() / mask.sum().clamp(min=1)


def validation_r2(model, store: SessionStore) -> tuple[float, int]:
    """Sum and count of the R² (standardised units) over the validation parts of ``store``."""
    total, count = 0.0, 0
    for k, summary in enumerate(store.summaries):
        if len(summary.val_intervals) == 0:
            continue
        s = store[k]
        keep = inside(s.behavior.timestamps, s.val_intervals) & s.behavior.valid
        pred = predict_tokens(model, s.tokens, s.behavior.timestamps[keep], s.session_id)
        total += r2_score(s.targets[keep], pred)["mean"]
        count += 1
    return total, count


class DecodingTask:
    """Behaviour decoding on a store of sessions (see the module docstring).

    Parameters
    ----------
    model : POYO
        The model; only parameters with ``requires_grad`` train.
    store : SessionStore
        This process's sessions.
    config : TrainingConfig
        Batch size, unit dropout and windows per epoch are read here.
    world_size : int
        Processes sharing the batch.
    total_train_seconds : float or None
        Training time of the whole corpus (all processes); this store's by default.
    """

    score_name = "r2"

    def __init__(
        self, model, store: SessionStore, config: TrainingConfig, world_size: int = 1, total_train_seconds=None
    ):
        self.model, self.store = model, store
        self.unit_dropout = config.unit_dropout
        self.local_batch = config.batch_size // world_size
        self.vocab = [np.asarray(model.unit_emb.tokenizer(s.unit_ids), dtype=np.int64) for s in store.summaries]
        local_seconds = np.array([s.train_seconds for s in store.summaries])
        self.session_weights = local_seconds / local_seconds.sum()
        seconds = total_train_seconds if total_train_seconds is not None else local_seconds.sum()
        self.steps_per_epoch = steps_per_epoch(
            seconds, model.sequence_length, config.batch_size, config.windows_per_epoch
        )

    def start_epoch(self, rng) -> None:
        pass  # windows are drawn afresh at every step

    def loss(self, net, rng, step_in_epoch) -> torch.Tensor:
        k = rng.choice(len(self.store), p=self.session_weights)
        session = self.store[k]
        starts = sample_window_starts(session.train_intervals, self.model.sequence_length, self.local_batch, rng)
        keep = unit_dropout_mask(self.local_batch, session.tokens.num_units, self.unit_dropout, rng)
        batch = make_batch(self.model, session, self.vocab[k], starts, keep)
        target, mask = batch.pop("target"), batch.pop("target_mask")
        return masked_mse(net(**batch), target, mask)

    def validate(self) -> tuple[float, int]:
        return validation_r2(self.model, self.store)

    def identity(self) -> dict:
        return {
            "architecture": self.model.config,
            "unit_vocab": self.model.unit_emb.vocab,
            "session_vocab": self.model.session_emb.vocab,
        }

    def sampler_state(self) -> dict:
        return {}

    def load_sampler_state(self, state: dict) -> None:
        pass
