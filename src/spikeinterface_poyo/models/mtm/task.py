"""Masked modelling as a :class:`~spikeinterface_poyo.training.trainer.TrainingTask`: batches of
one session's windows under one scheme's mask, Poisson loss on the scored entries, and a
validation score (minus the Poisson NLL of masked entries) on fixed masks."""

from __future__ import annotations

import math

import numpy as np
import torch

from ...training.config import TrainingConfig
from ...training.distributed import with_every_parameter
from ..masking import draw_mask, session_regions, session_schemes
from .data import BinnedSession

VALIDATION_SEED = 12345  # the validation masks are the same every epoch


def masked_poisson_nll(log_rates: torch.Tensor, counts: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """Mean Poisson negative log-likelihood (without ``log k!``) over the scored entries."""
    log_rates, counts = log_rates[scored], counts[scored]
    return (log_rates.exp() - counts * log_rates).mean()


def masked_input(counts: np.ndarray, hidden: np.ndarray, device) -> torch.Tensor:
    """The counts with the hidden entries zeroed, as a float tensor on ``device``."""
    return torch.from_numpy(np.where(hidden, 0.0, counts).astype(np.float32)).to(device)


class MaskedModellingTask:
    """Training windows drawn across sessions, one session and one scheme per batch.

    Sessions are drawn in proportion to their training time, and a scheme uniformly among
    those the session supports (:func:`~spikeinterface_poyo.models.masking.session_schemes`).

    Parameters
    ----------
    model : MtM
        The model, with a stitcher for every session.
    sessions : list of BinnedSession
        The training data.
    config : TrainingConfig
        Batch size and epoch length.
    world_size : int, default: 1
        Processes sharing each batch.
    """

    score_name = "neg_masked_nll"

    def __init__(self, model, sessions: list[BinnedSession], config: TrainingConfig, world_size: int = 1):
        self.model, self.sessions = model, sessions
        self.index = [model.session_index(s.session_id) for s in sessions]
        self.regions = [session_regions(s.brain_area) for s in sessions]
        self.schemes = [session_schemes(model.schemes, r, s.session_id) for s, r in zip(sessions, self.regions)]
        self.local_batch = max(1, config.batch_size // world_size)
        windows = np.array([max(s.num_windows("train"), 1) for s in sessions], dtype=float)
        self.weights = windows / windows.sum()
        per_epoch = config.windows_per_epoch or int(
            np.clip(2 * windows.sum(), 4 * config.batch_size, 200 * config.batch_size)
        )
        self.steps_per_epoch = max(1, math.ceil(per_epoch / config.batch_size))
        self.mask_ratio = model.config["mask_ratio"]
        self.validation = self._validation_batches()

    def _validation_batches(self) -> list[tuple[int, str, np.ndarray, object]]:
        """Fixed (session, scheme, windows, mask) for every session and scheme with validation data."""
        rng = np.random.default_rng(VALIDATION_SEED)
        batches = []
        for k, session in enumerate(self.sessions):
            counts, _ = session.windows("val")
            for scheme in self.schemes[k] if len(counts) else ():
                mask = draw_mask(scheme, counts.shape, self.regions[k], rng, self.mask_ratio)
                batches.append((k, scheme, counts, mask))
        return batches

    def start_epoch(self, rng) -> None:
        pass

    def loss(self, net, rng, step_in_epoch) -> torch.Tensor:
        k = int(rng.choice(len(self.sessions), p=self.weights))
        scheme = self.schemes[k][rng.integers(len(self.schemes[k]))]
        counts = self.sessions[k].sample("train", self.local_batch, rng)
        mask = draw_mask(scheme, counts.shape, self.regions[k], rng, self.mask_ratio)
        device = self.model.device
        log_rates = net(masked_input(counts, mask.hidden, device), self.index[k], scheme)
        target = torch.from_numpy(counts).to(device)
        return with_every_parameter(masked_poisson_nll(log_rates, target, torch.from_numpy(mask.scored).to(device)),
                                    self.model)  # fmt: skip

    @torch.no_grad()
    def validate(self) -> tuple[float, int]:
        total, count = 0.0, 0
        device = self.model.device
        for k, scheme, counts, mask in self.validation:
            for lo in range(0, len(counts), 64):
                c, hidden, scored = counts[lo : lo + 64], mask.hidden[lo : lo + 64], mask.scored[lo : lo + 64]
                log_rates = self.model(masked_input(c, hidden, device), self.index[k], scheme)
                nll = log_rates.exp() - torch.from_numpy(c).to(device) * log_rates
                total -= float(nll[torch.from_numpy(scored).to(device)].sum())
                count += int(scored.sum())
        return total, count

    def identity(self) -> dict:
        return {
            "family": "mtm",
            "architecture": self.model.config,
            "sessions": [(s.session_id, s.num_units, s.fingerprint) for s in self.sessions],
        }

    def sampler_state(self) -> dict:
        return {}

    def load_sampler_state(self, state: dict) -> None:
        pass
