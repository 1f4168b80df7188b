"""One training configuration for every loop: training, pretraining, finetuning, baselines."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

#: Settings that change what a run computes; a resumed run must have the same ones.
_BOOKKEEPING = ("progress_bar", "checkpoint_dir", "checkpoint_every", "keep_checkpoints", "resume")


@dataclass
class TrainingConfig:
    """How a model is optimised.

    Parameters
    ----------
    seed : int, default: 0
        Seed of initialisation, batch sampling and dropout. Runs with the same seed are
        identical unless ``max_time_s`` shortens the schedule.
    max_epochs : int, default: 60
        Length of the schedule in epochs.
    max_time_s : float or None, default: 600
        Wall-clock budget in seconds; with the one-cycle schedule it is re-fitted after each
        epoch so the learning rate anneals before time runs out.
    batch_size : int, default: 16
        Windows (or samples) per optimiser step, over all processes.
    lr : float, default: 2e-3
        Peak learning rate.
    weight_decay : float, default: 1e-4
        Decoupled weight decay, on weight matrices only (not biases, norms or embeddings' padding).
    optimizer : {"adamw", "lamb"}, default: "adamw"
        Optimiser.
    schedule : {"one_cycle", "constant"}, default: "one_cycle"
        Learning-rate schedule.
    clip_grad_norm : float or None, default: 1.0
        Gradient-norm clipping; None turns it off.
    unit_dropout : float, default: 0.1
        Largest fraction of units dropped from a training window (augmentation).
    val_fraction : float, default: 0.1
        Last fraction of each session's training time held out for early stopping.
    patience : int, default: 15
        Epochs without a better validation score before stopping.
    windows_per_epoch : int or None, default: None
        Windows per epoch; by default each second of training data is seen about twice.
    progress_bar : bool, default: True
        Show a tqdm progress bar.
    checkpoint_dir : str, Path or None, default: None
        Folder for periodic, resumable training checkpoints.
    checkpoint_every : int or None, default: None
        Steps between checkpoints; once per epoch by default.
    keep_checkpoints : int, default: 2
        Complete checkpoints kept.
    resume : bool, default: False
        Continue from the newest readable checkpoint in ``checkpoint_dir``.
    """

    seed: int = 0
    max_epochs: int = 60
    max_time_s: float | None = 600.0
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    schedule: str = "one_cycle"
    clip_grad_norm: float | None = 1.0
    unit_dropout: float = 0.1
    val_fraction: float = 0.1
    patience: int = 15
    windows_per_epoch: int | None = None
    progress_bar: bool = True
    checkpoint_dir: object = None
    checkpoint_every: int | None = None
    keep_checkpoints: int = 2
    resume: bool = False

    def __post_init__(self):
        positive = {"max_epochs": self.max_epochs, "batch_size": self.batch_size, "lr": self.lr}
        positive["patience"] = self.patience
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}.")
        if self.max_time_s is not None and not self.max_time_s > 0:
            raise ValueError(f"max_time_s must be positive (or None for no budget), got {self.max_time_s}.")
        if not 0 <= self.unit_dropout < 1:
            raise ValueError(f"unit_dropout must be in [0, 1), got {self.unit_dropout}.")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}.")
        if self.optimizer not in ("adamw", "lamb"):
            raise ValueError(f"optimizer must be 'adamw' or 'lamb', got {self.optimizer!r}.")
        if self.schedule not in ("one_cycle", "constant"):
            raise ValueError(f"schedule must be 'one_cycle' or 'constant', got {self.schedule!r}.")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must not be negative, got {self.weight_decay}.")

    def replace(self, **changes) -> TrainingConfig:
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)

    def hyperparameters(self) -> dict:
        """The settings that change what a run computes (JSON-ready)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _BOOKKEEPING}

    @classmethod
    def split_kwargs(cls, config: TrainingConfig | None, kwargs: dict, defaults: dict | None = None):
        """``config`` with the training settings among ``kwargs`` applied, and the other kwargs.

        The keyword arguments of :func:`train_decoder` and friends are either training settings
        (this class's fields) or model settings (the preset's architecture).
        """
        names = {f.name for f in fields(cls)}
        settings = {k: v for k, v in kwargs.items() if k in names}
        rest = {k: v for k, v in kwargs.items() if k not in names}
        base = config if config is not None else cls(**(defaults or {}))
        return base.replace(**settings) if settings else base, rest
