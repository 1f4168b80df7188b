"""Training MtM: from scratch or pretraining on many sessions (:func:`pretrain_mtm`), and
adapting a trained model to a new session (:func:`finetune_mtm`), on the package's training loop
(budgets, early stopping on the validation NLL of masked entries, checkpoints, torchrun)."""

from __future__ import annotations

import copy
import logging

import torch

from ..._version import __version__
from ...training.config import TrainingConfig
from ...training.distributed import init_distributed
from ...training.trainer import Trainer
from .data import BinnedSession, bin_session
from .model import PRESETS, MtM
from .task import MaskedModellingTask

logger = logging.getLogger(__name__)

#: Training settings of MtM unless given (the learning rate chosen on validation data of a
#: simulated session, see benchmarks/mtm.py).
MTM_TRAINING_DEFAULTS = {"lr": 5e-3, "weight_decay": 0.01, "batch_size": 16, "max_epochs": 100, "patience": 10}


def as_binned_sessions(sortings, session_ids=None, events=None, **binning) -> list[BinnedSession]:
    """:class:`BinnedSession` objects from a sorting, a list of them, a dict id -> sorting, or
    BinnedSession objects (passed through); ``events`` is one per session (list or dict), or None."""
    if isinstance(sortings, dict):
        session_ids, sortings = list(sortings), list(sortings.values())
    elif not isinstance(sortings, (list, tuple)):
        sortings = [sortings]
        session_ids = [session_ids] if isinstance(session_ids, str) else session_ids
        events = [events]
    session_ids = list(session_ids) if session_ids is not None else [None] * len(sortings)
    if isinstance(events, dict):
        events = [events.get(s) for s in session_ids]
    events = list(events) if events is not None else [None] * len(sortings)
    if not len(session_ids) == len(events) == len(sortings):
        raise ValueError(
            f"Got {len(sortings)} sortings, {len(session_ids)} session ids and {len(events)} event arrays; "
            "give one of each per session."
        )
    sessions = []
    for sorting, sid, ev in zip(sortings, session_ids, events):
        sessions.append(
            sorting if isinstance(sorting, BinnedSession) else bin_session(sorting, sid, events=ev, **binning)
        )
    ids = [s.session_id for s in sessions]
    if len(set(ids)) < len(ids):
        raise ValueError(f"Session ids must differ, got {ids}; name the sessions with session_ids=[...].")
    return sessions


def _check_binning(model: MtM, sessions: list[BinnedSession]) -> None:
    for s in sessions:
        if abs(s.bin_size - model.bin_size) > 1e-12 or s.num_bins > model.num_bins:
            raise ValueError(
                f"Session {s.session_id!r} is binned at {s.bin_size * 1e3:g} ms x {s.num_bins} bins, the model at "
                f"{model.bin_size * 1e3:g} ms x {model.num_bins}; bin it as the model is."
            )


def _train(model: MtM, sessions: list[BinnedSession], config: TrainingConfig, device, what: str) -> MtM:
    ctx = init_distributed()
    try:
        model.to(ctx.device(device))
        task = MaskedModellingTask(model, sessions, config, ctx.world_size)
        record = Trainer(task, config, ctx).run()
    finally:
        ctx.end()
    model.meta["training"] = {
        "kind": what,
        "sessions": [s.session_id for s in sessions],
        "schemes": {s.session_id: list(sch) for s, sch in zip(sessions, task.schemes)},
        "preset": model.config.get("preset"),
        "package_version": __version__,
        "settings": config.hyperparameters(),
        **record,
    }
    return model.eval()


def pretrain_mtm(
    sortings,
    session_ids=None,
    events=None,
    preset: str = "cpu",
    schemes="mtm",
    bin_size: float = 0.02,
    num_bins: int = 100,
    mask_ratio: float = 0.3,
    config: TrainingConfig | None = None,
    device=None,
    **kwargs,
) -> MtM:
    """Train an MtM model from scratch on one or many sessions, without behaviour.

    Parameters
    ----------
    sortings : BaseSorting, list, dict or BinnedSession
        The sessions: a sorting, a list of sortings, a dict session id -> sorting, or
        :class:`BinnedSession` objects from :func:`bin_session`.
    session_ids : list of str or None
        Names of the sessions (for a list of sortings).
    events : array_like, trials table, list, dict or None
        Event times per session: windows around them instead of contiguous blocks.
    preset : {"cpu", "paper"}, default: "cpu"
        Architecture (:data:`PRESETS`); ``dim``, ``depth``, ``heads``, ``dropout`` and ``position``
        (``"learned"`` as NDT1, or ``"rope"``) in ``kwargs`` override it.
    schemes : "mtm", "all", str or list, default: "mtm"
        Masking schemes: ``"mtm"`` alternates neuron, causal, intra- and inter-region masking
        (the paper's MtM); ``"temporal"`` is the NDT1 baseline.
    bin_size, num_bins : float, int
        Binning (20 ms x 100 bins = 2 s windows by default).
    mask_ratio : float, default: 0.3
        Fraction of bins or units masked.
    config : TrainingConfig or None
        Budgets, optimiser, stopping and checkpoints; :data:`MTM_TRAINING_DEFAULTS` otherwise.
    device : str or None
        Where to train; CUDA when available.
    **kwargs
        Training settings (fields of :class:`TrainingConfig`) or architecture sizes.

    Returns
    -------
    MtM
        The model with the weights that validated best; ``model.meta["training"]`` says how.
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose among {sorted(PRESETS)}.")
    config, rest = TrainingConfig.split_kwargs(config, kwargs, MTM_TRAINING_DEFAULTS)
    architecture = {**PRESETS[preset], **rest}
    unknown = sorted(set(architecture) - set(PRESETS[preset]))
    if unknown:
        raise TypeError(f"Unknown settings {unknown}; see sip.TrainingConfig and sip.MTM_PRESETS for the valid ones.")
    sessions = as_binned_sessions(sortings, session_ids, events, bin_size=bin_size, num_bins=num_bins)
    model = MtM(
        **architecture, num_bins=sessions[0].num_bins, bin_size=sessions[0].bin_size,
        schemes=schemes, mask_ratio=mask_ratio, preset=preset,
    )  # fmt: skip
    _check_binning(model, sessions)
    torch.manual_seed(config.seed)
    for s in sessions:
        model.add_session(s.session_id, s.unit_ids, s.brain_area, s.fingerprint, s.mean_counts())
    return _train(model, sessions, config, device, "pretrain" if len(sessions) > 1 else "train")


def finetune_mtm(
    model: MtM,
    sortings,
    session_ids=None,
    events=None,
    freeze_backbone: bool = False,
    config: TrainingConfig | None = None,
    device=None,
    **kwargs,
) -> MtM:
    """Adapt a trained MtM model to new sessions: new stitchers and session tokens, trained
    with the backbone frozen (``freeze_backbone=True``) or with it.

    Returns a new model that knows the old sessions and the new ones; ``model`` is unchanged.
    Parameters are those of :func:`pretrain_mtm`.
    """
    config, rest = TrainingConfig.split_kwargs(config, kwargs, MTM_TRAINING_DEFAULTS)
    if rest:
        raise TypeError(f"Unknown settings {sorted(rest)}; finetuning keeps the model's architecture.")
    sessions = as_binned_sessions(sortings, session_ids, events, bin_size=model.bin_size, num_bins=model.num_bins)
    _check_binning(model, sessions)
    tuned = copy.deepcopy(model).cpu()
    tuned.meta = copy.deepcopy(model.meta)
    torch.manual_seed(config.seed)
    # the old sessions' stitchers stay as they are; the backbone too when frozen
    fixed = {id(p) for m in (tuned.stitch_in, tuned.stitch_out, tuned.session_tokens) for p in m.parameters()}
    for s in sessions:
        tuned.add_session(s.session_id, s.unit_ids, s.brain_area, s.fingerprint, s.mean_counts())
    if freeze_backbone:
        fixed |= {id(p) for p in tuned.backbone_parameters()}
    for p in tuned.parameters():
        p.requires_grad_(id(p) not in fixed)
    pretraining = tuned.meta.get("training", {})
    tuned = _train(tuned, sessions, config, device, "finetune")
    for p in tuned.parameters():
        p.requires_grad_(True)
    tuned.meta["training"]["freeze_backbone"] = freeze_backbone
    tuned.meta["training"]["pretraining"] = {k: pretraining.get(k) for k in ("kind", "sessions", "steps", "preset")}
    return tuned
