"""Training POYO: :func:`pretrain` across sessions (and animals) and :func:`train_decoder` on one.

Both build a :class:`~.task.DecodingTask` and hand it to the shared
:class:`~spikeinterface_poyo.training.trainer.Trainer`; under ``torchrun`` each process reads its
own shard of the sessions and the gradients are averaged across processes.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..._version import __version__
from ...core.intervals import inside
from ...core.sessions import SessionSource, SessionStore, SessionSummary, as_source, normalization
from ...core.spikes import sorting_fingerprint
from ...core.windows import check_context
from ...training.config import TrainingConfig
from ...training.distributed import Distributed, init_distributed, shard
from ...training.trainer import Trainer, steps_per_epoch
from ..masking import resolve_schemes
from .finetuning import finetune
from .masked import BIN_SIZE, JointTask, MaskedSpikesTask, spike_sessions
from .model import POYO, PRESETS
from .task import DecodingTask

#: :func:`pretrain`'s defaults where they differ from :class:`TrainingConfig`'s (which are
#: :func:`train_decoder`'s): larger batches and more unit dropout across many sessions.
PRETRAIN_DEFAULTS = dict(batch_size=32, unit_dropout=0.3)

#: :func:`train_decoder`'s recipes (see its ``recipe`` parameter).
RECIPES = ("default", "fast")
#: ``recipe="fast"``: the shipped model it starts from, its window (seconds) and learning rate.
FAST_RECIPE = dict(model="poyo_small_sim_hc", sequence_length=0.5, lr=1e-3)


def _corpus_summaries(store: SessionStore | None, mine: list[int], ctx: Distributed) -> list[SessionSummary]:
    """The summaries of every rank's sessions (a rank may have none), in corpus order, each once."""
    by_source: dict[int, list[SessionSummary]] = {}
    for indices, summaries in ctx.gather((mine, store.summaries_by_source() if store is not None else [])):
        by_source.update(zip(indices, summaries))
    return [s for i in sorted(by_source) for s in by_source[i]]


def fingerprints(data) -> dict:
    """Per-session sorting fingerprints (of summaries), where known."""
    return {s.session_id: s.fingerprint for s in data if getattr(s, "fingerprint", None)}


OBJECTIVES = ("behavior", "masked", "both")


def _spike_corpus(sources, mine, window, config, ctx) -> tuple[list, dict, list[tuple]]:
    """This rank's sessions for masked modelling, its labelled sources (corpus index -> source),
    and every rank's ``(session_id, unit_ids, train_seconds, fingerprint)`` in corpus order."""
    spikes, labelled, described = [], {}, []
    for i in mine:
        sorting, behavior = sources[i].load()
        segments = spike_sessions(sorting, sources[i].session_id, window, config.val_fraction)
        spikes += segments
        if behavior is not None:  # the spikes and behaviour already read, not read again by the store
            labelled[i] = SessionSource(sources[i].session_id, lambda s=sorting, b=behavior: (s, b))
        seconds = sum(s.train_seconds for s in segments)
        described.append(
            (i, (sources[i].session_id, segments[0].tokens.unit_ids, seconds, sorting_fingerprint(sorting)))
        )
    corpus = dict(item for part in ctx.gather(described) for item in part)
    return spikes, labelled, [corpus[i] for i in sorted(corpus)]


def _mean_rate(spikes) -> float:
    """Mean firing rate (Hz) of the units of these sessions over their training time."""
    counts = sum(int(np.sum(inside(s.tokens.times, s.train_intervals))) for s in spikes)
    unit_seconds = sum(s.tokens.num_units * s.train_seconds for s in spikes)
    return max(counts / max(unit_seconds, 1e-9), 1e-3)


def pretrain(
    sessions,
    preset: str = "small",
    *,
    objective: str = "behavior",
    schemes="mtm",
    mask_ratio: float = 0.3,
    context: str = "centred",
    config: TrainingConfig | None = None,
    max_sessions_in_memory: int | None = None,
    device=None,
    **kwargs,
) -> POYO:
    """Train one POYO model across several sessions (and animals), with behaviour labels,
    from spikes alone (masked modelling), or both.

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
        behaviour must have the same number of dimensions; with ``objective="masked"`` or
        ``"both"`` a behaviour may be None (the session then serves the masked objective only).
    preset : str, default: "small"
        Architecture from :data:`~spikeinterface_poyo.models.poyo.PRESETS`.
    objective : {"behavior", "masked", "both"}, default: "behavior"
        What the model learns from: behaviour labels (mean squared error of the readout),
        masked modelling of the spikes (an encoding head predicts the counts of hidden units,
        bins or regions from the rest, Poisson loss; no labels needed), or the sum of both
        losses at every step (early stopping then on the behaviour's validation R²).
    schemes : str or list, default: "mtm"
        Masking schemes of the masked objective (neuron, causal, intra- and inter-region; see
        :mod:`spikeinterface_poyo.models.masking`). Sessions with fewer than two labelled regions
        (``brain_area``) fall back to neuron + causal masking.
    mask_ratio : float, default: 0.3
        Fraction of units (or bins) hidden by a mask.
    context : {"centred", "causal"}, default: "centred"
        Where the model reads behaviour in its windows, stored with it (``model.context``) and
        used by decoding: ``"causal"`` weighs the behaviour in the last ``latent_step`` of each
        window most in the loss and decodes each time from the spikes before it only (see
        ``docs/streaming.md``).
    config : TrainingConfig or None
        How to train; by default :class:`TrainingConfig` with batch 32 and unit dropout 0.3.
    max_sessions_in_memory : int or None, default: None
        Labelled sessions held in memory at once per process (least recently used ones are
        dropped and read again when drawn); None holds all of them. The masked objective holds
        the spikes of its sessions.
    device : str or torch.device or None
        Defaults to this process's GPU when there is one, else the CPU.
    **kwargs
        Training settings (any :class:`TrainingConfig` field: ``max_time_s=``, ``seed=``...)
        applied on top of ``config``, and overrides of the preset's architecture (``dim=``...).

    Returns
    -------
    POYO
        The trained model, with its behaviour description (None after ``objective="masked"``),
        target statistics, session fingerprints and training record in ``model.meta``.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}.")
    check_context(context)
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
        spikes, described, corpus = [], [], []
        labelled = {i: sources[i] for i in mine}
        if objective != "behavior":
            spikes, labelled, described = _spike_corpus(sources, mine, window, config, ctx)
        store = None  # a process may hold no labelled session under objective="both"
        if objective != "masked":
            if labelled:
                store = SessionStore(list(labelled.values()), window, config.val_fraction, max_sessions_in_memory)
            corpus = _corpus_summaries(store, list(labelled), ctx)
            if not corpus:
                raise ValueError("No session has behaviour; give some, or use objective='masked'.")
        dims = {len(s.mean) for s in corpus}
        if len(dims) > 1:
            raise ValueError(
                f"All sessions must decode the same number of dimensions, got {sorted(dims)}; in objective='both' "
                "give the sessions with other behaviour as None (masked objective only), or pretrain them apart."
            )

        torch.manual_seed(config.seed)
        # a model that never sees behaviour gets a one-dimensional readout, replaced by finetune
        model = POYO.from_preset(preset, dim_out=dims.pop() if dims else 1, **model_kwargs,
                                 encoding_head=objective != "behavior", context=context)  # fmt: skip
        units = {s.session_id: s.unit_ids for s in corpus} | {d[0]: d[1] for d in described}
        for session_id in ids:
            model.unit_emb.extend_vocab(units[session_id])
        model.session_emb.extend_vocab(ids)
        model.to(ctx.device(device))
        train_seconds = float(sum(s.train_seconds for s in corpus) if corpus else sum(d[2] for d in described))
        decoding = masked = None
        if store is not None:
            decoding = DecodingTask(model, store, config, ctx.world_size, total_train_seconds=train_seconds)
        if objective != "behavior":
            with torch.no_grad():  # the head starts at the corpus's mean rate, not at 1 Hz
                model.encoding_head.readout.bias.fill_(math.log(_mean_rate(spikes)))
            masked_seconds = float(sum(d[2] for d in described))
            masked = MaskedSpikesTask(model, spikes, config, ctx.world_size, schemes, mask_ratio, masked_seconds)
        if objective == "both":  # every process takes as many steps: the epoch follows the whole corpus
            steps = max(steps_per_epoch(s, window, config.batch_size, config.windows_per_epoch)
                        for s in (train_seconds, masked_seconds))  # fmt: skip
            task = JointTask(decoding, masked, steps)
        else:
            task = decoding or masked
        record = Trainer(task, config, ctx).run()
    finally:
        ctx.end()
    untrained = ["session_emb", "dec_atn", "dec_ffn", "readout"] if objective == "masked" else []
    model.meta = {
        "behavior": corpus[0].behavior if corpus else None,
        "normalization": normalization(corpus),
        "fingerprints": fingerprints(corpus) | {d[0]: d[3] for d in described},
        "sampling_frequency": corpus[0].sampling_frequency if corpus else None,
        "training": {
            "package_version": __version__,
            "preset": preset,
            "seed": config.seed,
            "sessions": ids,
            "objective": objective,
            "context": context,
            "mode": "from_scratch" if len(ids) == 1 else "pretraining",
            "num_units": len(model.unit_emb) - 1,
            "train_seconds": train_seconds,
            "labelled_sessions": [s.session_id for s in corpus],
            "nan_samples_excluded": int(sum(s.num_missing for s in corpus)),
            "hyperparameters": config.hyperparameters(),
            "untrained": untrained,
            **record,
        },
    }
    if objective != "behavior":
        model.meta["training"]["masking"] = {"schemes": list(resolve_schemes(schemes)), "mask_ratio": mask_ratio,
                                             "bin_size": BIN_SIZE}  # fmt: skip
    return model


def train_decoder(
    sorting,
    behavior,
    preset: str = "small",
    *,
    session_id: str = "session",
    context: str = "centred",
    recipe: str = "default",
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
    context : {"centred", "causal"}, default: "centred"
        ``"causal"``: a decoder whose every prediction comes from the window of spikes before it
        (for closed-loop use and :class:`~spikeinterface_poyo.StreamingDecoder`); see
        :func:`pretrain`.
    recipe : {"default", "fast"}, default: "default"
        ``"default"``: a ``preset`` model from a random initialisation. ``"fast"``, for a daily
        recalibration where the training time is short: start from the weights of the shipped
        ``poyo_small_sim_hc`` (a ``small`` model trained on simulated and rat hippocampus sessions,
        never on this one), with new embeddings for this session's units and session and a 0.5 s
        window (:data:`FAST_RECIPE`), and train every weight (:func:`finetune`'s ``"full"`` mode;
        learning rate 1e-3 unless ``lr=`` is given, ``config.lr`` is not used). The preset must be
        ``"small"``, and ``sequence_length=`` is the only architecture setting it takes. Chosen
        for causal decoding on the validation part of the M1 session's training time by
        ``benchmarks/recalibration.py`` (its choice and R² against training time:
        ``benchmarks/results/recalibration.md``, and ``docs/streaming.md``).
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
        fingerprint and the training record in ``model.meta`` (after ``recipe="fast"``, the
        shipped model's record with this session's ``finetuning`` entry and ``recipe`` added).
    """
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}.")
    config, rest = TrainingConfig.split_kwargs(config, kwargs)
    if recipe == "fast":
        return _warm_started(sorting, behavior, preset, session_id, context, config, device, kwargs.get("lr"), rest)
    return pretrain([(sorting, behavior, session_id)], preset, context=context, config=config, device=device, **rest)


def _warm_started(sorting, behavior, preset, session_id, context, config, device, lr, architecture) -> POYO:
    """``train_decoder(recipe="fast")``: the shipped model, read in ``context`` through a window of
    ``FAST_RECIPE``'s length, finetuned in full on the session."""
    from ..registry import load_model  # the registry imports the families, this one included

    check_context(context)
    window = float(architecture.pop("sequence_length", FAST_RECIPE["sequence_length"]))
    if not window > 0:
        raise ValueError(f"sequence_length must be positive, got {window}.")
    if preset != "small" or architecture:
        raise ValueError(
            f"recipe='fast' starts from the shipped 'small' model {FAST_RECIPE['model']!r} and keeps its architecture "
            f"(a window, sequence_length=, may change); got preset={preset!r}"
            + (f" and {sorted(architecture)}" if architecture else "")
            + ". Use recipe='default' for another architecture."
        )
    model = load_model(FAST_RECIPE["model"], device=device)
    # the architecture reads its window and context from these at every call: no weight depends on them
    model.sequence_length = model.config["sequence_length"] = window
    if context != "centred":
        model.config["context"] = context
    lr = FAST_RECIPE["lr"] if lr is None else lr
    finetune(model, sorting, behavior, "full", session_id=session_id, lr=lr, config=config, device=device)
    # the record's top level describes this session's training, as after a start from scratch; the
    # shipped model's own record moves under "warm_start_from"
    training = model.meta["training"]
    stage = {k: v for k, v in training["finetuning"][-1]["stages"][-1].items() if k not in ("stage", "trained", "lr")}
    shipped = {k: training.pop(k) for k in [*stage, "history", "hyperparameters"] if k in training}
    recipe = {"name": "fast", "model": FAST_RECIPE["model"], "sequence_length": window, "lr": lr}
    hyperparameters = {**config.hyperparameters(), "lr": lr}
    training.update(stage, hyperparameters=hyperparameters, context=context, recipe=recipe, warm_start_from=shipped)
    return model
