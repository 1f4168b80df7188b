"""The optimisation loop every model family trains with: budgets, schedules, early stopping,
best weights, resumable checkpoints and data-parallel training under ``torchrun``.

A family hands the :class:`Trainer` a :class:`TrainingTask`: the module to optimise, how to
draw a batch and compute its loss, and how to score the validation data. Everything else
(optimiser, schedule, stopping, checkpoints, distributed gradients) lives here once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from typing import Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoints import CheckpointMismatch, TrainingCheckpoints, flatten_optimizer_state, unflatten_optimizer_state
from .config import TrainingConfig
from .distributed import Distributed, init_distributed
from .optim import make_optimizer, one_cycle

logger = logging.getLogger(__name__)

#: Steps into the first epoch at which a time-budgeted one-cycle schedule is first re-fitted to the
#: pace: until then it spans ``max_epochs``, whose warm-up alone can outlast a short budget.
EARLY_REFIT_STEPS = 20


class TrainingTask(Protocol):
    """What a model family provides to be trained.

    Attributes
    ----------
    model : torch.nn.Module
        What is optimised (parameters with ``requires_grad``) and checkpointed.
    steps_per_epoch : int
        Optimiser steps between two validations.
    score_name : str
        Name of the validation score (``"r2"``, ``"nll"``...) in the training record.
    """

    model: torch.nn.Module
    steps_per_epoch: int
    score_name: str  # what validate() scores, e.g. "r2": the record then has val_r2 and best_val_r2

    def start_epoch(self, rng: np.random.Generator) -> None:
        """Called before each epoch's first step (a sampler can reshuffle here)."""

    def loss(self, net: torch.nn.Module, rng: np.random.Generator, step_in_epoch: int) -> torch.Tensor:
        """Draw this process's share of one batch and return its loss through ``net``
        (the model, or its DistributedDataParallel wrapper)."""

    def validate(self) -> tuple[float, int]:
        """Sum and count of the validation score (higher is better) over this process's data."""

    def identity(self) -> dict:
        """JSON that describes the model and data; a resumed run must match it."""

    def sampler_state(self) -> dict:
        """JSON state of the task's own sampler, saved in checkpoints."""

    def load_sampler_state(self, state: dict) -> None:
        """Restore :meth:`sampler_state`."""


def _clone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


class Trainer:
    """Optimise ``task.model`` and keep the weights that validate best.

    Each step asks the task for one batch's loss and takes one optimiser step; after each
    epoch the validation score decides early stopping and which weights are kept, and with a
    time budget the one-cycle schedule is re-fitted to end within it. Checkpoints hold the
    model, the best weights, the optimiser, the scheduler, the loop counters, the settings and
    every process's sampler and RNG state, so a resumed run continues exactly where the killed
    one stopped, and refuses to continue with other settings.

    Parameters
    ----------
    task : TrainingTask
        The family's batches, loss and validation.
    config : TrainingConfig
        Budgets, optimiser, schedule, stopping and checkpoints.
    ctx : Distributed or None
        The process group; joined from the environment when None.
    """

    def __init__(self, task: TrainingTask, config: TrainingConfig, ctx: Distributed | None = None):
        ctx = ctx if ctx is not None else init_distributed()
        if config.batch_size % ctx.world_size:
            raise ValueError(
                f"batch_size ({config.batch_size}) must be a multiple of the number of processes ({ctx.world_size})."
            )
        self.task, self.config, self.ctx = task, config, ctx
        model = self.model = task.model
        self.progress_bar = config.progress_bar and ctx.is_main
        self.rng = np.random.default_rng([config.seed, ctx.rank] if ctx.enabled else config.seed)
        torch.manual_seed(config.seed + 7919 * ctx.rank)

        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.params, config.optimizer, config.lr, config.weight_decay)
        self.schedule_total = config.max_epochs * task.steps_per_epoch
        factor = (lambda step: one_cycle(step, self.schedule_total)) if config.schedule == "one_cycle" else None
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor or (lambda step: 1.0))

        # loop state
        self.step, self.epoch, self.step_in_epoch = 0, 0, 0
        self.epoch_losses: list[float] = []
        self.epoch_step_seconds = 0.0  # time in optimisation steps, without validation or checkpoints
        self.val_key = f"val_{getattr(task, 'score_name', 'score')}"
        self.history: dict[str, list[float]] = {"train_loss": [], self.val_key: [], "step_seconds": []}
        self.best_score, self.best_epoch = -np.inf, 0
        self.best_state = _clone_state(model)
        self.elapsed_before = 0.0  # training time spent before a resume
        self.stopped: str | None = None
        self.resumed_from: str | None = None

        self.checkpoints = None
        if config.checkpoint_dir is not None:
            self.checkpoints = TrainingCheckpoints(config.checkpoint_dir, ctx, config.keep_checkpoints)
            self._resume_or_start(config.resume)
        self.checkpoint_every = config.checkpoint_every or task.steps_per_epoch
        self.net = model
        if ctx.enabled and self.params:
            from torch.nn.parallel import DistributedDataParallel

            device = next(model.parameters()).device
            ids = [device] if device.type == "cuda" else None
            self.net = DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> dict:
        """Train until the schedule ends, validation stops improving or time runs out.

        Returns a JSON-ready record: epochs, best epoch and score, steps, time, why it stopped,
        the number of processes, the checkpoint it resumed from and the per-epoch history.
        """
        self.t0 = time.perf_counter()
        bar = tqdm(total=self.schedule_total, initial=self.step, desc="training", disable=not self.progress_bar)
        while self.stopped is None:
            self.model.train()
            if self.step_in_epoch == 0:
                self.task.start_epoch(self.rng)
            while self.step_in_epoch < self.task.steps_per_epoch:
                tic = time.perf_counter()
                self.epoch_losses.append(self.train_step())
                self.epoch_step_seconds += time.perf_counter() - tic
                self.step += 1
                self.step_in_epoch += 1
                if self.epoch == 0 and self.step == EARLY_REFIT_STEPS < self.task.steps_per_epoch:
                    self.refit_schedule(self.step)
                bar.update(1)
                if self.checkpoints is not None and self.step % self.checkpoint_every == 0:
                    self.save_checkpoint()
            self.end_epoch()
            bar.total = self.schedule_total
            bar.set_postfix(loss=f"{self.history['train_loss'][-1]:.3f}", val=f"{self.history[self.val_key][-1]:.3f}")
        bar.close()
        self.net = self.model  # drop the DDP wrapper (and its hooks on the process group)
        self.model.load_state_dict(self.best_state)
        self.model.eval()
        return {
            "epochs": len(self.history[self.val_key]),
            "best_epoch": self.best_epoch,
            f"best_{self.val_key}": float(self.best_score),
            "steps": self.step,
            "train_time_s": round(self.elapsed(), 2),
            "stopped_by": self.stopped,
            "world_size": self.ctx.world_size,
            "resumed_from": self.resumed_from,
            "history": self.history,
        }

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t0

    def train_step(self) -> float:
        loss = self.task.loss(self.net, self.rng, self.step_in_epoch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.clip_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        return loss.item()

    def end_epoch(self) -> None:
        """Validate, keep the best weights, re-fit the schedule and decide whether to stop."""
        self.model.eval()
        with torch.no_grad():
            total, count = self.task.validate()
        loss_sum, val_sum, val_count = self.ctx.sum([np.mean(self.epoch_losses), total, count])
        val = val_sum / val_count if val_count else float("nan")
        self.history["train_loss"].append(loss_sum / self.ctx.world_size)
        self.history[self.val_key].append(val)
        self.history["step_seconds"].append(self.ctx.from_main(self.epoch_step_seconds))
        self.epoch += 1
        self.step_in_epoch, self.epoch_losses, self.epoch_step_seconds = 0, [], 0.0
        if not np.isfinite(val) or val > self.best_score:
            self.best_score, self.best_epoch, self.best_state = val, self.epoch, _clone_state(self.model)
        elapsed = self.refit_schedule(self.epoch * self.task.steps_per_epoch)
        max_time_s = self.config.max_time_s
        if self.step >= self.schedule_total:
            self.stopped = "schedule_end"
        elif np.isfinite(val) and self.epoch - self.best_epoch >= self.config.patience:
            self.stopped = "early_stopping"
        elif max_time_s is not None and elapsed > max_time_s:
            self.stopped = "max_time_s"

    def refit_schedule(self, steps_done: int) -> float:
        """Re-fit a time-budgeted one-cycle schedule to the whole epochs that fit in the budget at the
        average pace of the ``steps_done`` steps so far (validation included once an epoch has ended),
        so the learning rate anneals before time runs out. Returns rank 0's elapsed time (every rank
        uses the same clock, so all stop together)."""
        elapsed = self.ctx.from_main(self.elapsed())
        max_time_s = self.config.max_time_s
        if max_time_s is not None and self.config.schedule == "one_cycle" and steps_done > 0:
            fitting_steps = steps_done + (max_time_s - elapsed) / (elapsed / steps_done)
            fitting = int(fitting_steps // self.task.steps_per_epoch)
            self.schedule_total = min(self.config.max_epochs, max(self.epoch, 1, fitting)) * self.task.steps_per_epoch
        return elapsed

    # -- checkpoints ------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        opt_tensors, opt_info = flatten_optimizer_state(self.optimizer.state_dict())
        shared = {
            "step": self.step,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "history": self.history,
            "best_score": float(self.best_score),
            "best_epoch": self.best_epoch,
            "schedule_total": self.schedule_total,
            "elapsed": self.elapsed(),
            "scheduler": self.scheduler.state_dict(),  # lr_lambdas of plain functions are stored as None
            "optimizer": opt_info,
            "task_sha256": _digest(self.task.identity()),
            "hyperparameters": self.config.hyperparameters(),
        }
        rank_tensors = {"torch_rng": torch.get_rng_state()}
        if torch.cuda.is_available():
            rank_tensors.update({f"cuda_rng_{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
        self.checkpoints.save(
            self.step,
            shared,
            {"model": self.model.state_dict(), "best": self.best_state, "optimizer": opt_tensors},
            {
                "numpy_rng": self.rng.bit_generator.state,
                "epoch_losses": self.epoch_losses,
                "epoch_step_seconds": self.epoch_step_seconds,
                "sampler": self.task.sampler_state(),
            },
            rank_tensors,
        )

    def _resume_or_start(self, resume: bool) -> None:
        found = self.checkpoints.load_latest() if resume else None
        if not resume and self.checkpoints.existing():
            raise FileExistsError(
                f"{self.checkpoints.folder} already holds training checkpoints; pass resume=True to continue "
                "that run, or choose an empty checkpoint folder."
            )
        if found is None:
            if resume:
                logger.info("No training checkpoint in %s; starting from the beginning.", self.checkpoints.folder)
            return
        shared = found["shared"]
        if shared.get("task_sha256") != _digest(self.task.identity()):
            raise CheckpointMismatch(
                f"{found['path']} was written for another model or set of sessions (units, session ids or "
                "architecture differ); resume with the same sessions and settings, or use an empty folder."
            )
        saved, now = shared.get("hyperparameters", {}), self.config.hyperparameters()
        changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        if changed:
            details = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed)
            raise CheckpointMismatch(
                f"{found['path']} was written with other training settings ({details}); a resumed run must use "
                "the settings it started with. Resume with those, or start a new run in an empty folder."
            )
        device = next(self.model.parameters()).device
        self.model.load_state_dict(found["tensors"]["model"])
        self.best_state = {k: v.to(device) for k, v in found["tensors"]["best"].items()}
        self.optimizer.load_state_dict(unflatten_optimizer_state(found["tensors"]["optimizer"], shared["optimizer"]))
        self.scheduler.load_state_dict(shared["scheduler"])
        self.step, self.epoch, self.step_in_epoch = shared["step"], shared["epoch"], shared["step_in_epoch"]
        self.history, self.schedule_total = shared["history"], shared["schedule_total"]
        self.best_score, self.best_epoch = shared["best_score"], shared["best_epoch"]
        self.elapsed_before = shared["elapsed"]
        rank_state = found["rank_state"]
        self.rng.bit_generator.state = rank_state["numpy_rng"]
        self.epoch_losses = rank_state["epoch_losses"]
        self.epoch_step_seconds = rank_state["epoch_step_seconds"]
        self.task.load_sampler_state(rank_state.get("sampler", {}))
        torch.set_rng_state(found["rank_tensors"]["torch_rng"])
        if torch.cuda.is_available():
            states = [found["rank_tensors"][k] for k in sorted(found["rank_tensors"]) if k.startswith("cuda_rng_")]
            if states:
                torch.cuda.set_rng_state_all(states)
        self.resumed_from = found["path"].name
        logger.info("Resumed training from %s (step %d).", found["path"], self.step)


def steps_per_epoch(train_seconds: float, window: float, batch_size: int, windows_per_epoch: int | None) -> int:
    """Steps per epoch for window-sampling tasks: each second of training data seen about twice."""
    if windows_per_epoch is None:
        windows_per_epoch = int(np.clip(2 * train_seconds / window, 4 * batch_size, 200 * batch_size))
    return max(1, math.ceil(windows_per_epoch / batch_size))
