"""Train POYO decoders: the optimisation loop, early stopping, checkpoints and resume.

The same loop runs in one process and under ``torchrun``: each process then trains on
its own shard of sessions and windows, and ``DistributedDataParallel`` averages the
gradients (see :mod:`spikeinterface_poyo.distributed`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__
from .behavior import Behavior
from .decoding import predict_tokens
from .distributed import Distributed, init_distributed, shard
from .metrics import r2_score
from .model import POYO, PRESETS
from .sessions import SessionData, SessionStore, SessionSummary, as_source, inside
from .tokens import collate_query_windows, collate_spike_windows
from .training_checkpoint import (
    CheckpointMismatch,
    TrainingCheckpoints,
    flatten_optimizer_state,
    unflatten_optimizer_state,
)

logger = logging.getLogger(__name__)


def default_device() -> torch.device:
    """CUDA when it is there, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sample_window_starts(intervals: np.ndarray, window: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random window starts, each window lying inside one interval, uniform over time."""
    room = intervals[:, 1] - intervals[:, 0] - window
    which = (
        rng.choice(len(intervals), size=n, p=room / room.sum())
        if room.sum() > 0
        else rng.integers(len(intervals), size=n)
    )
    return intervals[which, 0] + rng.random(n) * np.maximum(room[which], 0)


def unit_dropout_mask(num_windows: int, num_units: int, max_drop: float, rng: np.random.Generator) -> np.ndarray:
    """(B, U) keep-mask dropping a random fraction (up to ``max_drop``) of units per window."""
    if max_drop <= 0 or num_units < 2:
        return np.ones((num_windows, num_units), dtype=bool)
    keep_counts = np.ceil(num_units * (1 - max_drop * rng.random(num_windows))).astype(int)
    ranks = np.argsort(np.argsort(rng.random((num_windows, num_units)), axis=1), axis=1)
    return ranks < keep_counts[:, None]


def make_batch(
    model: POYO,
    session: SessionData,
    vocab_index: np.ndarray,
    starts: np.ndarray,
    keep_units: np.ndarray | None,
) -> dict[str, torch.Tensor]:
    """Model inputs plus ``target`` and ``target_mask`` for windows of one session."""
    window = model.sequence_length
    batch = collate_spike_windows(session.tokens, starts, window, vocab_index, keep_units)
    index, mask, relative = collate_query_windows(session.behavior.timestamps, starts, window)
    target = session.targets[index]
    mask = mask & np.all(np.isfinite(target), axis=-1)
    latent_index, latent_timestamps = model.latent_tokens(len(starts))
    device = model.device
    batch = {k: v.to(device) for k, v in batch.items()}
    batch.update(
        latent_index=latent_index,
        latent_timestamps=latent_timestamps,
        session_index=torch.full((len(starts),), model.session_emb.tokenizer(session.session_id), device=device),
        output_timestamps=relative.to(device),
        target=torch.from_numpy(np.nan_to_num(target).astype(np.float32)).to(device),
        target_mask=torch.from_numpy(mask).to(device),
    )
    return batch


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the real (unmasked) queries."""
    err = ((pred - target) ** 2).mean(dim=-1)
    return (err * mask).sum() / mask.sum().clamp(min=1)


def one_cycle(step: int, total: int, warmup: float = 0.1) -> float:
    """One-cycle learning-rate factor: linear warm-up, then cosine decay to zero."""
    warm = max(1, int(warmup * total))
    if step < warm:
        return (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return 0.5 * (1 + math.cos(math.pi * progress))


def validation_r2(model: POYO, store: SessionStore) -> tuple[float, int]:
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


def _make_optimizer(params: list, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "lamb":
        from .optim import Lamb

        return Lamb(groups, lr=lr)
    raise ValueError(f"optimizer must be 'adamw' or 'lamb', got {name!r}.")


def _vocab_digest(model: POYO) -> str:
    words = json.dumps([model.unit_emb.vocab, model.session_emb.vocab])
    return hashlib.sha256(words.encode()).hexdigest()


class Trainer:
    """The optimisation loop of :func:`fit`, with its whole state saved and restored.

    Each step draws one session of this rank's shard (in proportion to its training
    time), ``batch_size / world_size`` random windows of it and a unit-dropout mask,
    and takes one optimiser step; after each epoch the validation R² decides early
    stopping and which weights are kept. Checkpoints hold the model, the best weights,
    the optimiser, the scheduler, the loop counters, and every rank's sampler and RNG
    state, so a resumed run continues exactly where the killed one stopped.
    """

    def __init__(
        self,
        model: POYO,
        store: SessionStore,
        *,
        ctx: Distributed,
        seed: int,
        max_epochs: int,
        max_time_s: float | None,
        batch_size: int,
        lr: float,
        weight_decay: float,
        optimizer: str,
        unit_dropout: float,
        patience: int,
        windows_per_epoch: int | None,
        total_train_seconds: float | None,
        progress_bar: bool,
        checkpoint_dir=None,
        checkpoint_every: int | None = None,
        keep_checkpoints: int = 2,
        resume: bool = False,
    ):
        if batch_size % ctx.world_size:
            raise ValueError(
                f"batch_size ({batch_size}) must be a multiple of the number of processes ({ctx.world_size})."
            )
        self.model, self.store, self.ctx = model, store, ctx
        self.max_epochs, self.max_time_s, self.patience = max_epochs, max_time_s, patience
        self.unit_dropout, self.progress_bar = unit_dropout, progress_bar and ctx.is_main
        self.local_batch = batch_size // ctx.world_size
        self.rng = np.random.default_rng([seed, ctx.rank] if ctx.enabled else seed)
        torch.manual_seed(seed + 7919 * ctx.rank)

        self.vocab = [np.asarray(model.unit_emb.tokenizer(s.unit_ids), dtype=np.int64) for s in store.summaries]
        local_seconds = np.array([s.train_seconds for s in store.summaries])
        self.session_weights = local_seconds / local_seconds.sum()
        seconds = total_train_seconds if total_train_seconds is not None else local_seconds.sum()
        if windows_per_epoch is None:  # each second of training data seen about twice per epoch
            windows_per_epoch = int(np.clip(2 * seconds / model.sequence_length, 4 * batch_size, 200 * batch_size))
        self.steps_per_epoch = max(1, math.ceil(windows_per_epoch / batch_size))

        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = _make_optimizer(self.params, optimizer, lr, weight_decay)
        self.schedule_total = max_epochs * self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: one_cycle(step, self.schedule_total)
        )

        # loop state
        self.step, self.epoch, self.step_in_epoch = 0, 0, 0
        self.epoch_losses: list[float] = []
        self.epoch_step_seconds = 0.0  # time in optimisation steps, without validation or checkpoints
        self.history: dict[str, list[float]] = {"train_loss": [], "val_r2": [], "step_seconds": []}
        self.best_r2, self.best_epoch = -np.inf, 0
        self.best_state = _clone_state(model)
        self.elapsed_before = 0.0  # training time spent before a resume
        self.stopped: str | None = None
        self.resumed_from: str | None = None

        self.checkpoints = TrainingCheckpoints(checkpoint_dir, ctx, keep_checkpoints) if checkpoint_dir else None
        self.checkpoint_every = checkpoint_every or self.steps_per_epoch
        if self.checkpoints is not None:
            self._resume_or_start(resume)
        self.net = model
        if ctx.enabled and self.params:
            from torch.nn.parallel import DistributedDataParallel

            ids = [model.device] if model.device.type == "cuda" else None
            self.net = DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> dict:
        """Train until the schedule ends, validation stops improving or time runs out."""
        self.t0 = time.perf_counter()
        bar = tqdm(total=self.schedule_total, initial=self.step, desc="training", disable=not self.progress_bar)
        while self.stopped is None:
            self.model.train()
            while self.step_in_epoch < self.steps_per_epoch:
                tic = time.perf_counter()
                self.epoch_losses.append(self.train_step())
                self.epoch_step_seconds += time.perf_counter() - tic
                self.step += 1
                self.step_in_epoch += 1
                bar.update(1)
                if self.checkpoints is not None and self.step % self.checkpoint_every == 0:
                    self.save_checkpoint()
            self.end_epoch()
            bar.total = self.schedule_total
            bar.set_postfix(loss=f"{self.history['train_loss'][-1]:.3f}", val_r2=f"{self.history['val_r2'][-1]:.3f}")
        bar.close()
        self.net = self.model  # drop the DDP wrapper (and its hooks on the process group)
        self.model.load_state_dict(self.best_state)
        self.model.eval()
        return {
            "epochs": len(self.history["val_r2"]),
            "best_epoch": self.best_epoch,
            "best_val_r2": float(self.best_r2),
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
        k = self.rng.choice(len(self.store), p=self.session_weights)
        session = self.store[k]
        starts = sample_window_starts(session.train_intervals, self.model.sequence_length, self.local_batch, self.rng)
        keep = unit_dropout_mask(self.local_batch, session.tokens.num_units, self.unit_dropout, self.rng)
        batch = make_batch(self.model, session, self.vocab[k], starts, keep)
        target, mask = batch.pop("target"), batch.pop("target_mask")
        loss = masked_mse(self.net(**batch), target, mask)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        return loss.item()

    def end_epoch(self) -> None:
        """Validate, keep the best weights, re-fit the schedule and decide whether to stop."""
        total, count = validation_r2(self.model, self.store)
        loss_sum, val_sum, val_count = self.ctx.sum([np.mean(self.epoch_losses), total, count])
        val = val_sum / val_count if val_count else float("nan")
        self.history["train_loss"].append(loss_sum / self.ctx.world_size)
        self.history["val_r2"].append(val)
        self.history["step_seconds"].append(self.ctx.from_main(self.epoch_step_seconds))
        self.epoch += 1
        self.step_in_epoch, self.epoch_losses, self.epoch_step_seconds = 0, [], 0.0
        if not np.isfinite(val) or val > self.best_r2:
            self.best_r2, self.best_epoch, self.best_state = val, self.epoch, _clone_state(self.model)
        elapsed = self.ctx.from_main(self.elapsed())  # rank 0's clock, so that all ranks stop together
        if self.max_time_s is not None:
            # re-fit the one-cycle schedule to the budget at the average pace so far, so the
            # learning rate anneals before time runs out (and a slow first epoch costs little)
            fitting = self.epoch + int((self.max_time_s - elapsed) / (elapsed / self.epoch))
            self.schedule_total = min(self.max_epochs, max(self.epoch, fitting)) * self.steps_per_epoch
        if self.step >= self.schedule_total:
            self.stopped = "schedule_end"
        elif np.isfinite(val) and self.epoch - self.best_epoch >= self.patience:
            self.stopped = "early_stopping"
        elif self.max_time_s is not None and elapsed > self.max_time_s:
            self.stopped = "max_time_s"

    # -- checkpoints ------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        opt_tensors, opt_info = flatten_optimizer_state(self.optimizer.state_dict())
        shared = {
            "step": self.step,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "history": self.history,
            "best_r2": float(self.best_r2),
            "best_epoch": self.best_epoch,
            "schedule_total": self.schedule_total,
            "elapsed": self.elapsed(),
            "scheduler": self.scheduler.state_dict(),  # lr_lambdas of plain functions are stored as None
            "optimizer": opt_info,
            "vocab_sha256": _vocab_digest(self.model),
            "architecture": self.model.config,
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
        if shared["vocab_sha256"] != _vocab_digest(self.model) or shared["architecture"] != self.model.config:
            raise CheckpointMismatch(
                f"{found['path']} was written for another model or set of sessions (units, session ids or "
                "architecture differ); resume with the same sessions and settings, or use an empty folder."
            )
        device = self.model.device
        self.model.load_state_dict(found["tensors"]["model"])
        self.best_state = {k: v.to(device) for k, v in found["tensors"]["best"].items()}
        self.optimizer.load_state_dict(unflatten_optimizer_state(found["tensors"]["optimizer"], shared["optimizer"]))
        self.scheduler.load_state_dict(shared["scheduler"])
        self.step, self.epoch, self.step_in_epoch = shared["step"], shared["epoch"], shared["step_in_epoch"]
        self.history, self.schedule_total = shared["history"], shared["schedule_total"]
        self.best_r2, self.best_epoch = shared["best_r2"], shared["best_epoch"]
        self.elapsed_before = shared["elapsed"]
        self.rng.bit_generator.state = found["rank_state"]["numpy_rng"]
        self.epoch_losses = found["rank_state"]["epoch_losses"]
        self.epoch_step_seconds = found["rank_state"]["epoch_step_seconds"]
        torch.set_rng_state(found["rank_tensors"]["torch_rng"])
        if torch.cuda.is_available():
            states = [found["rank_tensors"][k] for k in sorted(found["rank_tensors"]) if k.startswith("cuda_rng_")]
            if states:
                torch.cuda.set_rng_state_all(states)
        self.resumed_from = found["path"].name
        logger.info("Resumed training from %s (step %d).", found["path"], self.step)


def _clone_state(model: POYO) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def fit(
    model: POYO,
    sessions,
    *,
    seed: int = 0,
    max_epochs: int = 60,
    max_time_s: float | None = None,
    batch_size: int = 32,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    optimizer: str = "adamw",
    unit_dropout: float = 0.3,
    patience: int = 15,
    windows_per_epoch: int | None = None,
    total_train_seconds: float | None = None,
    progress_bar: bool = True,
    checkpoint_dir=None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 2,
    resume: bool = False,
    ctx: Distributed | None = None,
) -> dict:
    """Optimise ``model`` on ``sessions`` and keep the weights that validate best.

    ``sessions`` is a :class:`SessionStore` or a list of :class:`SessionData`. Only
    parameters with ``requires_grad`` train. Returns a JSON-ready record: epochs run,
    best validation R², steps, time, why training stopped, and the per-epoch history.
    """
    if not isinstance(sessions, SessionStore):
        sessions = SessionStore.from_data(sessions)
    trainer = Trainer(
        model,
        sessions,
        ctx=ctx if ctx is not None else init_distributed(),
        seed=seed,
        max_epochs=max_epochs,
        max_time_s=max_time_s,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        optimizer=optimizer,
        unit_dropout=unit_dropout,
        patience=patience,
        windows_per_epoch=windows_per_epoch,
        total_train_seconds=total_train_seconds,
        progress_bar=progress_bar,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        keep_checkpoints=keep_checkpoints,
        resume=resume,
    )
    return trainer.run()


def _first_behavior(behavior) -> Behavior:
    return behavior[0] if isinstance(behavior, (list, tuple)) else behavior


def _corpus_summaries(store: SessionStore, mine: list[int], ctx: Distributed) -> list[SessionSummary]:
    """The summaries of every rank's sessions, in corpus order, each session once."""
    by_source: dict[int, list[SessionSummary]] = {}
    for indices, summaries in ctx.gather((mine, store.summaries_by_source())):
        by_source.update(zip(indices, summaries))
    return [s for i in sorted(by_source) for s in by_source[i]]


def pretrain(
    sessions,
    preset: str = "small",
    *,
    seed: int = 0,
    max_epochs: int = 60,
    max_time_s: float | None = 600.0,
    batch_size: int = 32,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    optimizer: str = "adamw",
    unit_dropout: float = 0.3,
    val_fraction: float = 0.1,
    patience: int = 15,
    max_sessions_in_memory: int | None = None,
    checkpoint_dir=None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    device=None,
    progress_bar: bool = True,
    **model_kwargs,
) -> POYO:
    """Train one POYO model across several sessions (and animals).

    Every session gets its own session embedding and its own target statistics
    (stored in ``model.meta["normalization"]``); unit ids are namespaced by session,
    so units of different sessions never share an embedding. Batches are drawn from
    the sessions in proportion to their training time.

    Under ``torchrun`` each process reads its own shard of the sessions and the
    gradients are averaged with ``DistributedDataParallel`` (gloo on CPU, NCCL on GPU);
    ``batch_size`` is the global batch. Save the result on rank 0 only.

    Parameters
    ----------
    sessions : list
        ``(sorting, behavior, session_id)`` tuples, dicts with those keys, or
        :class:`~spikeinterface_poyo.sessions.SessionSource` objects (for example from
        :func:`~spikeinterface_poyo.sessions.nwb_session`) that are read only when
        needed. Every behaviour must have the same number of dimensions.
    max_sessions_in_memory : int or None, default: None
        Sessions held in memory at once per process (least recently used ones are
        dropped and read again when drawn); None holds all of them.
    checkpoint_dir : str or Path or None
        Folder for periodic training checkpoints (model, optimiser, scheduler, sampler
        and RNG state), written atomically; the newest two are kept.
    checkpoint_every : int or None
        Steps between checkpoints; by default once per epoch.
    resume : bool, default: False
        Continue from the newest readable checkpoint in ``checkpoint_dir`` (a corrupt one
        is skipped with a warning). Without it a folder that holds checkpoints is refused.
    preset, seed, max_epochs, max_time_s, batch_size, lr, weight_decay, optimizer, unit_dropout, \
val_fraction, patience, device, progress_bar, **model_kwargs
        As in :func:`train_decoder`.

    Returns
    -------
    POYO
        The trained model.
    """
    sources = [as_source(item) for item in sessions]
    if not sources:
        raise ValueError("pretrain needs at least one (sorting, behavior, session_id) session.")
    ids = [source.session_id for source in sources]
    if len(set(ids)) != len(ids):
        raise ValueError(f"Session ids must be unique, got {ids}.")
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {sorted(PRESETS)}.")
    window = float({**PRESETS[preset], **model_kwargs}.get("sequence_length", 1.0))

    ctx = init_distributed()
    try:
        mine = shard(len(sources), ctx)
        store = SessionStore([sources[i] for i in mine], window, val_fraction, max_sessions_in_memory)
        corpus = _corpus_summaries(store, mine, ctx)
        dims = {len(s.mean) for s in corpus}
        if len(dims) > 1:
            raise ValueError(f"All sessions must decode the same number of dimensions, got {sorted(dims)}.")

        torch.manual_seed(seed)
        model = POYO.from_preset(preset, dim_out=dims.pop(), **model_kwargs)
        for session_id in ids:
            model.unit_emb.extend_vocab(next(s.unit_ids for s in corpus if s.session_id == session_id))
        model.session_emb.extend_vocab(ids)
        model.to(ctx.device(device))
        hyperparameters = dict(
            max_epochs=max_epochs,
            max_time_s=max_time_s,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            optimizer=optimizer,
            unit_dropout=unit_dropout,
            val_fraction=val_fraction,
            patience=patience,
        )
        fit_kwargs = {k: v for k, v in hyperparameters.items() if k != "val_fraction"}
        train_seconds = float(sum(s.train_seconds for s in corpus))
        record = fit(
            model,
            store,
            seed=seed,
            progress_bar=progress_bar,
            total_train_seconds=train_seconds,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every,
            resume=resume,
            ctx=ctx,
            **fit_kwargs,
        )
    finally:
        ctx.end()
    model.meta = {
        "behavior": corpus[0].behavior,
        "normalization": normalization(corpus),
        "sampling_frequency": corpus[0].sampling_frequency,
        "training": {
            "package_version": __version__,
            "preset": preset,
            "seed": seed,
            "sessions": ids,
            "mode": "from_scratch" if len(ids) == 1 else "pretraining",
            "num_units": len(model.unit_emb) - 1,
            "train_seconds": train_seconds,
            "nan_samples_excluded": int(sum(s.num_missing for s in corpus)),
            "hyperparameters": hyperparameters,
            **record,
        },
    }
    return model


def normalization(data) -> dict:
    """Per-session target statistics (of :class:`SessionData` or summaries), JSON-ready."""
    return {s.session_id: {"mean": np.asarray(s.mean).tolist(), "std": np.asarray(s.std).tolist()} for s in data}


def train_decoder(
    sorting,
    behavior: Behavior,
    preset: str = "small",
    *,
    session_id: str = "session",
    seed: int = 0,
    max_epochs: int = 60,
    max_time_s: float | None = 600.0,
    batch_size: int = 16,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    optimizer: str = "adamw",
    unit_dropout: float = 0.1,
    val_fraction: float = 0.1,
    patience: int = 15,
    checkpoint_dir=None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    device=None,
    progress_bar: bool = True,
    **model_kwargs,
) -> POYO:
    """Train a POYO decoder on one session.

    Parameters
    ----------
    sorting : BaseSorting or SortingAnalyzer
        Spikes of the session. Units without spikes are kept.
    behavior : Behavior or list of Behavior
        Target behaviour on the spikes' clock (one per segment for a multi-segment sorting).
        Only the time it covers is used for training; NaN samples are left out.
    preset : str, default: "small"
        Architecture from :data:`spikeinterface_poyo.model.PRESETS`.
    session_id : str, default: "session"
        Namespace of the unit ids and name of the session embedding.
    seed : int, default: 0
        Seed of initialisation, window sampling and dropout. Runs with the same seed are
        identical unless ``max_time_s`` shortens the schedule.
    max_epochs : int, default: 60
        Length of the one-cycle schedule in epochs (an epoch shows each second of training
        data about twice).
    max_time_s : float or None, default: 600
        Wall-clock budget; after each epoch the schedule is re-fitted to end within it.
    batch_size : int, default: 16
        Windows per step. Within a CPU time budget smaller batches mean more updates: on M1
        hand velocity with 5 minutes of one core, 16 reached R² 0.84 to 0.85; 8 diverged.
    lr, weight_decay : float
        Peak learning rate of the one-cycle schedule and AdamW weight decay.
    optimizer : {"adamw", "lamb"}
        Optimiser.
    unit_dropout : float, default: 0.1
        Largest fraction of units dropped from a training window (augmentation; on one
        session 0.1 beat 0.3, R² 0.85 against 0.84 on M1. :func:`pretrain` uses 0.3).
    val_fraction : float, default: 0.1
        Last fraction of the training time held out for early stopping.
    patience : int, default: 15
        Epochs without a better validation R² before stopping.
    checkpoint_dir, checkpoint_every, resume
        Periodic, resumable training checkpoints; see :func:`pretrain`.
    device : str or torch.device or None
        Defaults to CUDA when available, else CPU.
    progress_bar : bool, default: True
        Show a tqdm progress bar.
    **model_kwargs
        Overrides of the preset's architecture (``dim=``, ``depth=``...).

    Returns
    -------
    POYO
        The trained model, with its behaviour description, target statistics and training
        record in ``model.meta``.
    """
    return pretrain(
        [(sorting, behavior, session_id)],
        preset,
        seed=seed,
        max_epochs=max_epochs,
        max_time_s=max_time_s,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        optimizer=optimizer,
        unit_dropout=unit_dropout,
        val_fraction=val_fraction,
        patience=patience,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        resume=resume,
        device=device,
        progress_bar=progress_bar,
        **model_kwargs,
    )
