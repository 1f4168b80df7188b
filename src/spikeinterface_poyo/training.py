"""Train POYO decoders: data preparation, the optimisation loop and early stopping."""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__
from .behavior import Behavior, usable_samples
from .decoding import predict_tokens
from .metrics import r2_score
from .model import POYO
from .tokens import SpikeTokens, collate_query_windows, collate_spike_windows, sorting_to_tokens

logger = logging.getLogger(__name__)


def default_device() -> torch.device:
    """CUDA when it is there, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class SessionData:
    """One session (one sorting segment) paired with its behaviour, split in time."""

    tokens: SpikeTokens
    behavior: Behavior
    targets: np.ndarray  # (T, D) standardised behaviour, NaN where missing
    mean: np.ndarray
    std: np.ndarray
    train_intervals: np.ndarray  # (K, 2) spans whole windows are sampled from
    val_intervals: np.ndarray

    @property
    def session_id(self) -> str:
        return self.tokens.session_id


def _intersect(intervals: np.ndarray, start: float, stop: float) -> np.ndarray:
    clipped = np.clip(intervals, start, stop)
    return clipped[clipped[:, 1] > clipped[:, 0]]


def _split_intervals(intervals: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Split a set of intervals in time: the last ``val_fraction`` of covered time is validation."""
    if val_fraction <= 0:
        return intervals, np.zeros((0, 2))
    lengths = intervals[:, 1] - intervals[:, 0]
    target = (1 - val_fraction) * lengths.sum()
    cumulative = np.concatenate([[0.0], np.cumsum(lengths)])
    k = int(np.searchsorted(cumulative, target, side="right") - 1)
    k = min(k, len(intervals) - 1)
    cut = intervals[k, 0] + (target - cumulative[k])
    return _intersect(intervals, -np.inf, cut), _intersect(intervals, cut, np.inf)


def prepare_session(
    tokens: SpikeTokens,
    behavior: Behavior,
    window: float,
    val_fraction: float = 0.1,
) -> SessionData:
    """Check that spikes and behaviour fit together and split them for training.

    Raises a ``ValueError`` that names the problem when the behaviour is empty, all
    NaN, does not overlap the spikes, or covers less than one window.
    """
    valid = usable_samples(behavior)
    if behavior.num_missing:
        logger.warning(
            "%d of %d samples of %r are NaN; they are left out of training and scoring.",
            behavior.num_missing,
            len(behavior),
            behavior.name,
        )
    span = (tokens.start_time, tokens.end_time)
    intervals = _intersect(behavior.contiguous_intervals(), *span)
    if len(intervals) == 0:
        raise ValueError(
            f"Behaviour {behavior.name!r} ({behavior.start_time:.3f}-{behavior.end_time:.3f} s) does not overlap "
            f"the spikes ({span[0]:.3f}-{span[1]:.3f} s). Are both on the same clock? Shift one of them "
            "(sorting.shift_times or behavior.timestamps) so they line up."
        )
    long_enough = intervals[intervals[:, 1] - intervals[:, 0] >= window]
    if len(long_enough) == 0:
        raise ValueError(
            f"The overlap of spikes and behaviour is shorter than one {window:g} s window "
            f"(longest stretch {np.max(intervals[:, 1] - intervals[:, 0]):.3f} s); provide more data."
        )
    train, val = _split_intervals(long_enough, val_fraction)
    if val_fraction > 0 and (len(val) == 0 or (val[:, 1] - val[:, 0]).sum() < window):
        raise ValueError(
            f"The validation part ({val_fraction:.0%} of the data) is shorter than one window; "
            "provide more data or set val_fraction=0."
        )
    train = train[train[:, 1] - train[:, 0] >= window]
    if len(train) == 0:
        raise ValueError("After the validation split no stretch of training data is one window long.")
    train_values = behavior.values[valid & _inside(behavior.timestamps, train)]
    mean = train_values.mean(axis=0)
    std = train_values.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return SessionData(tokens, behavior, (behavior.values - mean) / std, mean, std, train, val)


def _inside(times: np.ndarray, intervals: np.ndarray) -> np.ndarray:
    inside = np.zeros(len(times), dtype=bool)
    for start, stop in intervals:
        inside |= (times >= start) & (times < stop)
    return inside


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


def validation_r2(model: POYO, sessions: list[SessionData]) -> float:
    """Mean R² over the validation parts of the sessions (standardised units)."""
    scores = []
    for s in sessions:
        if len(s.val_intervals) == 0:
            continue
        keep = _inside(s.behavior.timestamps, s.val_intervals) & s.behavior.valid
        t = s.behavior.timestamps[keep]
        pred = predict_tokens(model, s.tokens, t, s.session_id)
        scores.append(r2_score(s.targets[keep], pred)["mean"])
    return float(np.mean(scores)) if scores else float("nan")


def fit(
    model: POYO,
    sessions: list[SessionData],
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
    trainable=None,
    progress_bar: bool = True,
) -> dict:
    """Optimise ``model`` on ``sessions`` and keep the weights that validate best.

    Returns a JSON-ready history: epochs run, best validation R², steps and time.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    window = model.sequence_length
    vocab = [np.asarray(model.unit_emb.tokenizer(s.tokens.unit_ids), dtype=np.int64) for s in sessions]
    train_time = np.array([(s.train_intervals[:, 1] - s.train_intervals[:, 0]).sum() for s in sessions])
    if windows_per_epoch is None:  # each second of training data seen about twice per epoch
        windows_per_epoch = int(np.clip(2 * train_time.sum() / window, 4 * batch_size, 200 * batch_size))
    steps_per_epoch = max(1, math.ceil(windows_per_epoch / batch_size))
    total_steps = max_epochs * steps_per_epoch

    params = [p for p in (trainable if trainable is not None else model.parameters()) if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=lr)
    elif optimizer == "lamb":
        from .optim import Lamb

        opt = Lamb(groups, lr=lr)
    else:
        raise ValueError(f"optimizer must be 'adamw' or 'lamb', got {optimizer!r}.")
    schedule = {"total": total_steps}
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: one_cycle(step, schedule["total"]))

    session_weights = train_time / train_time.sum()
    best = {"r2": -np.inf, "state": copy.deepcopy(model.state_dict()), "epoch": 0}
    history = {"train_loss": [], "val_r2": []}
    t0 = time.perf_counter()
    step = 0
    stopped = "max_epochs"
    bar = tqdm(total=total_steps, desc="training", disable=not progress_bar, unit="step")
    for epoch in range(max_epochs):
        model.train()
        losses = []
        for _ in range(steps_per_epoch):
            k = rng.choice(len(sessions), p=session_weights)
            s = sessions[k]
            starts = sample_window_starts(s.train_intervals, window, batch_size, rng)
            keep = unit_dropout_mask(batch_size, s.tokens.num_units, unit_dropout, rng)
            batch = make_batch(model, s, vocab[k], starts, keep)
            target, mask = batch.pop("target"), batch.pop("target_mask")
            loss = masked_mse(model(**batch), target, mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            scheduler.step()
            losses.append(loss.item())
            step += 1
            bar.update(1)
        val = validation_r2(model, sessions)
        history["train_loss"].append(float(np.mean(losses)))
        history["val_r2"].append(val)
        bar.set_postfix(loss=f"{np.mean(losses):.3f}", val_r2=f"{val:.3f}")
        if not np.isfinite(val) or val > best["r2"]:
            best = {"r2": val, "state": copy.deepcopy(model.state_dict()), "epoch": epoch + 1}
        elapsed = time.perf_counter() - t0
        if max_time_s is not None:
            # re-fit the one-cycle schedule to the budget at the average pace so far, so the
            # learning rate anneals before time runs out (and a slow first epoch costs little)
            fitting = epoch + 1 + int((max_time_s - elapsed) / (elapsed / (epoch + 1)))
            schedule["total"] = min(max_epochs, max(epoch + 1, fitting)) * steps_per_epoch
            bar.total = schedule["total"]
        if step >= schedule["total"]:
            break
        if np.isfinite(val) and epoch + 1 - best["epoch"] >= patience:
            stopped = "early_stopping"
            break
        if max_time_s is not None and elapsed > max_time_s:
            stopped = "max_time_s"
            break
    bar.close()
    model.load_state_dict(best["state"])
    model.eval()
    return {
        "epochs": len(history["val_r2"]),
        "best_epoch": best["epoch"],
        "best_val_r2": float(best["r2"]),
        "steps": step,
        "train_time_s": round(time.perf_counter() - t0, 2),
        "stopped_by": stopped if step < schedule["total"] else "schedule_end",
        "history": history,
    }


def session_data(sorting, behavior, session_id: str, window: float, val_fraction: float = 0.1) -> list[SessionData]:
    """Pair each segment of a sorting with its behaviour, checked and split in time.

    ``behavior`` is one :class:`Behavior`, or a list with one per segment; statistics
    for standardising the targets are shared by all segments of the session.
    """
    segments = sorting_to_tokens(sorting, session_id=session_id)
    behaviors = list(behavior) if isinstance(behavior, (list, tuple)) else [behavior]
    if len(behaviors) != len(segments):
        raise ValueError(
            f"Session {session_id!r}: the sorting has {len(segments)} segments but {len(behaviors)} behaviour "
            "series were given; pass one Behavior per segment."
        )
    sessions = [prepare_session(t, b, window, val_fraction) for t, b in zip(segments, behaviors)]
    if len(sessions) > 1:
        values = np.concatenate([s.behavior.values[s.behavior.valid] for s in sessions])
        mean, std = values.mean(axis=0), np.where(values.std(axis=0) > 0, values.std(axis=0), 1.0)
        for s in sessions:
            s.mean, s.std, s.targets = mean, std, (s.behavior.values - mean) / std
    return sessions


def describe_behavior(behavior: Behavior) -> dict:
    """JSON description of the readout: name, unit, dimension names and sampling rate."""
    dt = float(np.median(np.diff(behavior.timestamps))) if len(behavior) > 1 else 0.01
    return {
        "name": behavior.name,
        "unit": behavior.unit,
        "dimension_names": behavior.dimension_names,
        "rate": 1.0 / dt,
    }


def _first_behavior(behavior) -> Behavior:
    return behavior[0] if isinstance(behavior, (list, tuple)) else behavior


def _unpack_session(item) -> tuple:
    if isinstance(item, dict):
        return item["sorting"], item["behavior"], item["session_id"]
    sorting, behavior, session_id = item
    return sorting, behavior, session_id


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
    device=None,
    progress_bar: bool = True,
    **model_kwargs,
) -> POYO:
    """Train one POYO model across several sessions (and animals).

    Every session gets its own session embedding and its own target statistics
    (stored in ``model.meta["normalization"]``); unit ids are namespaced by session,
    so units of different sessions never share an embedding. Batches are drawn from
    the sessions in proportion to their training time.

    Parameters
    ----------
    sessions : list
        ``(sorting, behavior, session_id)`` tuples, or dicts with those keys. Every
        behaviour must have the same number of dimensions (one shared readout).
    preset, seed, max_epochs, max_time_s, batch_size, lr, weight_decay, optimizer, unit_dropout, \
val_fraction, patience, device, progress_bar, **model_kwargs
        As in :func:`train_decoder`.

    Returns
    -------
    POYO
        The trained model.
    """
    items = [_unpack_session(item) for item in sessions]
    if not items:
        raise ValueError("pretrain needs at least one (sorting, behavior, session_id) session.")
    ids = [session_id for _, _, session_id in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"Session ids must be unique, got {ids}.")
    dims = {_first_behavior(b).num_dimensions for _, b, _ in items}
    if len(dims) > 1:
        raise ValueError(f"All sessions must decode the same number of dimensions, got {sorted(dims)}.")

    torch.manual_seed(seed)
    model = POYO.from_preset(preset, dim_out=dims.pop(), **model_kwargs)
    data = []
    for sorting, behavior, session_id in items:
        data += session_data(sorting, behavior, str(session_id), model.sequence_length, val_fraction)
    for session_id in ids:
        model.unit_emb.extend_vocab(data_units(data, str(session_id)))
    model.session_emb.extend_vocab([str(i) for i in ids])
    model.to(torch.device(device) if device is not None else default_device())
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
    record = fit(model, data, seed=seed, progress_bar=progress_bar, **fit_kwargs)
    first_sorting = getattr(items[0][0], "sorting", items[0][0])
    model.meta = {
        "behavior": describe_behavior(_first_behavior(items[0][1])),
        "normalization": normalization(data),
        "sampling_frequency": float(first_sorting.sampling_frequency),
        "training": {
            "package_version": __version__,
            "preset": preset,
            "seed": seed,
            "sessions": [str(i) for i in ids],
            "mode": "from_scratch" if len(ids) == 1 else "pretraining",
            "num_units": len(model.unit_emb) - 1,
            "train_seconds": float(sum((s.train_intervals[:, 1] - s.train_intervals[:, 0]).sum() for s in data)),
            "nan_samples_excluded": int(sum(s.behavior.num_missing for s in data)),
            "hyperparameters": hyperparameters,
            **{k: v for k, v in record.items() if k != "history"},
        },
    }
    return model


def data_units(data: list[SessionData], session_id: str) -> list[str]:
    """Namespaced unit ids of one session (the same for all of its segments)."""
    return next(s.tokens.unit_ids for s in data if s.session_id == session_id)


def normalization(data: list[SessionData]) -> dict:
    """Per-session target statistics, JSON-ready."""
    return {s.session_id: {"mean": s.mean.tolist(), "std": s.std.tolist()} for s in data}


def train_decoder(
    sorting,
    behavior: Behavior,
    preset: str = "small",
    *,
    session_id: str = "session",
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
    batch_size, lr, weight_decay : training hyper-parameters.
    optimizer : {"adamw", "lamb"}
        Optimiser.
    unit_dropout : float, default: 0.3
        Largest fraction of units dropped from a training window (augmentation).
    val_fraction : float, default: 0.1
        Last fraction of the training time held out for early stopping.
    patience : int, default: 15
        Epochs without a better validation R² before stopping.
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
        device=device,
        progress_bar=progress_bar,
        **model_kwargs,
    )
