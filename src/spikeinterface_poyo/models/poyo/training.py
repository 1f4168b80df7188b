"""Training POYO: :func:`pretrain` across sessions (and animals) and :func:`train_decoder` on one.

Both build a :class:`~.task.DecodingTask` and hand it to the shared
:class:`~spikeinterface_poyo.training.trainer.Trainer`; under ``torchrun`` each process reads its
own shard of the sessions and the gradients are averaged across processes.
"""

from __future__ import annotations

import numpy as np
import torch

from ..._version import __version__
from ...core.sessions import SessionStore, SessionSummary, as_source
from ...training.config import TrainingConfig
from ...training.distributed import Distributed, init_distributed, shard
from ...training.trainer import Trainer
from .model import POYO, PRESETS
from .task import DecodingTask

#: :func:`pretrain`'s defaults where they differ from :class:`TrainingConfig`'s (which are
#: :func:`train_decoder`'s): larger batches and more unit dropout across many sessions.
PRETRAIN_DEFAULTS = dict(batch_size=32, unit_dropout=0.3)


def _corpus_summaries(store: SessionStore, mine: list[int], ctx: Distributed) -> list[SessionSummary]:
    """The summaries of every rank's sessions, in corpus order, each session once."""
    by_source: dict[int, list[SessionSummary]] = {}
    for indices, summaries in ctx.gather((mine, store.summaries_by_source())):
        by_source.update(zip(indices, summaries))
    return [s for i in sorted(by_source) for s in by_source[i]]


def normalization(data) -> dict:
    """Per-session target statistics (of :class:`SessionData` or summaries), JSON-ready."""
    return {s.session_id: {"mean": np.asarray(s.mean).tolist(), "std": np.asarray(s.std).tolist()} for s in data}


def fingerprints(data) -> dict:
    """Per-session sorting fingerprints (of summaries), where known."""
    return {s.session_id: s.fingerprint for s in data if getattr(s, "fingerprint", None)}


def pretrain(
    sessions,
    preset: str = "small",
    *,
    config: TrainingConfig | None = None,
    max_sessions_in_memory: int | None = None,
    device=None,
    **kwargs,
) -> POYO:
    """Train one POYO model across several sessions (and animals).

    Every session gets its own session embedding and its own target statistics
    (``model.meta["normalization"]``); unit ids are namespaced by session, so units of
    different sessions never share an embedding. Batches are drawn from the sessions in
    proportion to their training time.

    Under ``torchrun`` each process reads its own shard of the sessions and the gradients are
    averaged (gloo on CPU, NCCL on GPU); ``batch_size`` is the global batch. Save the result
    on rank 0 only.

    Parameters
    ----------
    sessions : list
        ``(sorting, behavior, session_id)`` tuples, dicts with those keys, or
        :class:`~spikeinterface_poyo.core.sessions.SessionSource` objects (for example from
        :func:`~spikeinterface_poyo.nwb_session`) that are read only when needed. Every
        behaviour must have the same number of dimensions.
    preset : str, default: "small"
        Architecture from :data:`~spikeinterface_poyo.models.poyo.PRESETS`.
    config : TrainingConfig or None
        How to train; by default :class:`TrainingConfig` with batch 32 and unit dropout 0.3.
    max_sessions_in_memory : int or None, default: None
        Sessions held in memory at once per process (least recently used ones are dropped and
        read again when drawn); None holds all of them.
    device : str or torch.device or None
        Defaults to this process's GPU when there is one, else the CPU.
    **kwargs
        Training settings (any :class:`TrainingConfig` field: ``max_time_s=``, ``seed=``...)
        applied on top of ``config``, and overrides of the preset's architecture (``dim=``...).

    Returns
    -------
    POYO
        The trained model, with its behaviour description, target statistics, session
        fingerprints and training record in ``model.meta``.
    """
    config, model_kwargs = TrainingConfig.split_kwargs(config, kwargs, PRETRAIN_DEFAULTS)
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
        store = SessionStore([sources[i] for i in mine], window, config.val_fraction, max_sessions_in_memory)
        corpus = _corpus_summaries(store, mine, ctx)
        dims = {len(s.mean) for s in corpus}
        if len(dims) > 1:
            raise ValueError(f"All sessions must decode the same number of dimensions, got {sorted(dims)}.")

        torch.manual_seed(config.seed)
        model = POYO.from_preset(preset, dim_out=dims.pop(), **model_kwargs)
        for session_id in ids:
            model.unit_emb.extend_vocab(next(s.unit_ids for s in corpus if s.session_id == session_id))
        model.session_emb.extend_vocab(ids)
        model.to(ctx.device(device))
        train_seconds = float(sum(s.train_seconds for s in corpus))
        task = DecodingTask(model, store, config, ctx.world_size, total_train_seconds=train_seconds)
        record = Trainer(task, config, ctx).run()
    finally:
        ctx.end()
    model.meta = {
        "behavior": corpus[0].behavior,
        "normalization": normalization(corpus),
        "fingerprints": fingerprints(corpus),
        "sampling_frequency": corpus[0].sampling_frequency,
        "training": {
            "package_version": __version__,
            "preset": preset,
            "seed": config.seed,
            "sessions": ids,
            "mode": "from_scratch" if len(ids) == 1 else "pretraining",
            "num_units": len(model.unit_emb) - 1,
            "train_seconds": train_seconds,
            "nan_samples_excluded": int(sum(s.num_missing for s in corpus)),
            "hyperparameters": config.hyperparameters(),
            **record,
        },
    }
    return model


def train_decoder(
    sorting,
    behavior,
    preset: str = "small",
    *,
    session_id: str = "session",
    config: TrainingConfig | None = None,
    device=None,
    **kwargs,
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
        Architecture from :data:`~spikeinterface_poyo.models.poyo.PRESETS`.
    session_id : str, default: "session"
        Namespace of the unit ids and name of the session embedding.
    config : TrainingConfig or None
        How to train; :class:`TrainingConfig`'s defaults (batch 16, unit dropout 0.1, 600 s,
        one-cycle AdamW at 2e-3) when None. On M1 hand velocity with 5 minutes of one core,
        batch 16 reached R² 0.84 to 0.85 (8 diverged), and unit dropout 0.1 beat 0.3.
    device : str or torch.device or None
        Defaults to CUDA when available, else the CPU.
    **kwargs
        Training settings (``max_time_s=``, ``seed=``, ``lr=``... any :class:`TrainingConfig`
        field) applied on top of ``config``, and overrides of the preset's architecture.

    Returns
    -------
    POYO
        The trained model, with its behaviour description, target statistics, the session's
        fingerprint and the training record in ``model.meta``.
    """
    config, rest = TrainingConfig.split_kwargs(config, kwargs)
    return pretrain([(sorting, behavior, session_id)], preset, config=config, device=device, **rest)
