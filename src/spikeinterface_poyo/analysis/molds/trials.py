"""From a sorting (or a continuous signal) and trial times to clustered trials: ``cluster_trials``.

Each trial is binned, square-root counts are reduced by a PCA fitted on the training trials only,
MoLDS is fitted on the training trials for each number of systems, and the number is chosen by
BIC on the held-out validation trials; the chosen model then labels every trial.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ...core.behavior import Behavior
from ...core.binning import count_matrix
from ...core.intervals import as_intervals
from ...core.spikes import as_sorting, single_segment_tokens
from .model import MoLDS


def trial_intervals(trials) -> np.ndarray:
    """(N, 2) ``[start, stop)`` seconds of an NWB trials table (a DataFrame with ``start_time`` and
    ``stop_time``) or of (N, 2) pairs."""
    if hasattr(trials, "columns"):
        missing = {"start_time", "stop_time"} - set(trials.columns)
        if missing:
            raise ValueError(f"The trials table lacks the columns {sorted(missing)}; give start_time and stop_time.")
        trials = np.column_stack([trials["start_time"], trials["stop_time"]])
    intervals = as_intervals(trials)
    if len(intervals) == 0:
        raise ValueError("No trials given.")
    return intervals


def trials_from_events(event_times, before: float, after: float) -> np.ndarray:
    """(N, 2) trials ``[t - before, t + after)`` around each event time (cue, go, movement onset)."""
    t = np.sort(np.asarray(event_times, dtype=float))
    return np.column_stack([t - before, t + after])


def movement_onsets(behavior: Behavior, fraction: float = 0.2, min_gap: float = 0.5) -> np.ndarray:
    """Movement onsets in continuous reaching data: the times where the speed (the norm over the
    behaviour's dimensions, e.g. hand velocity) rises through ``fraction`` of its 95th percentile,
    at least ``min_gap`` seconds after the previous onset."""
    speed = np.linalg.norm(np.nan_to_num(behavior.values), axis=1)
    level = fraction * np.percentile(speed, 95)
    rising = np.flatnonzero((speed[1:] >= level) & (speed[:-1] < level)) + 1
    onsets, last = [], -np.inf
    for t in behavior.timestamps[rising]:
        if t - last >= min_gap:
            onsets.append(t)
            last = t
    return np.array(onsets)


def event_inputs(trials, columns, bin_size: float) -> list[np.ndarray]:
    """Per-trial inputs with one channel per trials-table column of event times (``cue_on_time``,
    ``go_time``...): 1 in the bin holding the event, 0 elsewhere (the task's instructions as the
    system's inputs)."""
    intervals = trial_intervals(trials)
    out = []
    for i, (start, stop) in enumerate(intervals):
        u = np.zeros((_num_bins(start, stop, bin_size), len(columns)))
        for j, column in enumerate(columns):
            k = int(np.floor((float(trials[column].iloc[i]) - start) / bin_size + 1e-9))
            if 0 <= k < len(u):
                u[k, j] = 1.0
        out.append(u)
    return out


def _num_bins(start: float, stop: float, bin_size: float) -> int:
    return int(np.floor((stop - start) / bin_size + 1e-9))


def _resample(behavior: Behavior, start: float, num_bins: int, bin_size: float) -> np.ndarray:
    centres = start + (np.arange(num_bins) + 0.5) * bin_size
    # half a bin of slack: a signal sampled at bin centres starts half a bin after its first trial
    if centres[0] < behavior.timestamps[0] - bin_size or centres[-1] > behavior.timestamps[-1] + bin_size:
        raise ValueError(
            f"The trial at {start:.3f} s reaches outside the behaviour '{behavior.name}' "
            f"({behavior.timestamps[0]:.3f}-{behavior.timestamps[-1]:.3f} s); give trials inside it."
        )
    return np.column_stack([np.interp(centres, behavior.timestamps, v) for v in behavior.values.T])


@dataclass
class TrialClusters:
    """What :func:`cluster_trials` found.

    Attributes
    ----------
    labels : ndarray (N,)
        The system of each trial under the chosen model.
    posteriors : ndarray (N, K)
    model : MoLDS
        The chosen model (fitted on the training trials).
    n_components : int
    bic : dict
        Validation BIC for each number of systems tried.
    outputs, inputs : list of ndarray
        Each trial's outputs (PCs) and inputs, as fitted.
    intervals : ndarray (N, 2)
    train_index, validation_index : ndarray
    empty_trials : ndarray
        Trials with no spike at all (kept: a silent trial is an observation).
    skipped_tensor : dict
        For each number of systems where the tensor initialisation could not run, why.
    """

    labels: np.ndarray
    posteriors: np.ndarray
    model: MoLDS
    n_components: int
    bic: dict
    outputs: list
    inputs: list | None
    intervals: np.ndarray
    train_index: np.ndarray
    validation_index: np.ndarray
    bin_size: float
    empty_trials: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    skipped_tensor: dict = field(default_factory=dict)

    def to_dataframe(self):
        """One row per trial: start, stop, label, and the posterior of each system."""
        import pandas as pd

        df = pd.DataFrame({"start_time": self.intervals[:, 0], "stop_time": self.intervals[:, 1], "label": self.labels})
        for k in range(self.posteriors.shape[1]):
            df[f"p{k}"] = self.posteriors[:, k]
        return df

    def plot(self, **kwargs):
        """Trajectories coloured by cluster, impulse responses per system, the BIC curve
        (:func:`spikeinterface_poyo.plot_trial_clusters`)."""
        from ...spikeinterface.widgets import plot_trial_clusters

        return plot_trial_clusters(self, **kwargs)


def _trial_outputs(data, intervals, bin_size, unit_ids):
    """Per-trial (T_i, D) square-root counts of a sorting, or a continuous signal resampled at the
    bin centres; and the trials with no spike."""
    nbins = [_num_bins(a, b, bin_size) for a, b in intervals]
    short = [i for i, n in enumerate(nbins) if n < 2]
    if short:
        raise ValueError(
            f"Trials {short[:10]} ({len(short)} in all) hold fewer than 2 bins of {bin_size} s; use smaller bins "
            "or drop them."
        )
    if isinstance(data, Behavior):
        return [_resample(data, a, n, bin_size) for (a, _), n in zip(intervals, nbins)], np.zeros(0, dtype=int)
    sorting = as_sorting(data)
    if unit_ids is not None:
        sorting = sorting.select_units(list(unit_ids))
    tokens = single_segment_tokens(sorting)
    counts = [
        count_matrix(tokens.times, tokens.unit_index, tokens.num_units, a, bin_size, n)
        for (a, _), n in zip(intervals, nbins)
    ]
    empty = np.array([i for i, c in enumerate(counts) if c.sum() == 0], dtype=int)
    if len(empty) == len(counts):
        raise ValueError("No trial holds a spike: check that the trial times are on the sorting's clock.")
    if len(empty):
        warnings.warn(
            f"{len(empty)} trials hold no spike; they are kept (a silent trial is an observation).", stacklevel=3
        )
    return [np.sqrt(c.astype(float)) for c in counts], empty


def _trial_inputs(inputs, intervals, bin_size, outputs):
    if inputs is None:
        return None
    if isinstance(inputs, Behavior):
        return [_resample(inputs, a, len(y), bin_size) for (a, _), y in zip(intervals, outputs)]
    inputs = [np.asarray(u, dtype=float).reshape(len(u), -1) for u in inputs]
    if len(inputs) != len(outputs) or any(len(u) != len(y) for u, y in zip(inputs, outputs)):
        raise ValueError("inputs must hold one (T_i, m) array per trial, with the trial's number of bins.")
    return inputs


def cluster_trials(
    data,
    trials,
    inputs=None,
    n_components: int | None = None,
    max_components: int = 6,
    bin_size: float = 0.05,
    n_pcs: int | None = 3,
    state_dim: int = 2,
    init=("tensor", "kmeans"),
    n_init: int = 1,
    n_lags: int | None = None,
    validation_fraction: float = 0.3,
    max_iter: int = 100,
    unit_ids=None,
    random_state=0,
    progress_bar: bool = False,
) -> TrialClusters:
    """Cluster trials by their population dynamics with a mixture of LDSs.

    Parameters
    ----------
    data : BaseSorting, SortingAnalyzer or Behavior
        Spikes (binned per trial, square-root counts) or a continuous signal on the same clock
        (decoded behaviour, inferred rates), resampled at the bin centres.
    trials : DataFrame or array (N, 2)
        An NWB ``trials`` table (``start_time``, ``stop_time``) or ``[start, stop)`` pairs; see also
        :func:`trials_from_events` and :func:`movement_onsets`.
    inputs : Behavior, list of arrays or None, default: None
        The systems' inputs: a behaviour resampled at the bins (hand velocity), one (T_i, m) array per
        trial (for example :func:`event_inputs`), or None (then ``init="random"``).
    n_components : int or None, default: None
        Number of systems; chosen from ``1 .. max_components`` by validation BIC when None.
    max_components : int, default: 6
    bin_size : float, default: 0.05
        Seconds per bin.
    n_pcs : int or None, default: 3
        Principal components kept of the binned activity (fitted on the training trials); None keeps
        every channel.
    state_dim : int, default: 2
    init : str or sequence of str, default: ("tensor", "kmeans")
        MoLDS initialisations to try for each number of systems (the fit with the higher training
        log-likelihood is kept). ``"tensor"`` needs inputs whose lagged moments show the systems (it
        assumes white inputs); where it cannot run, the reason is kept in ``skipped_tensor``.
    n_init : int, default: 1
        Starts per initialisation.
    n_lags : int or None, default: None
    validation_fraction : float, default: 0.3
        Trials held out for choosing the number of systems.
    max_iter : int, default: 100
    unit_ids : list or None, default: None
        Units to use (all by default).
    random_state : int or None, default: 0
    progress_bar : bool, default: False

    Returns
    -------
    TrialClusters
    """
    intervals = trial_intervals(trials)
    raw, empty = _trial_outputs(data, intervals, bin_size, unit_ids)
    u = _trial_inputs(inputs, intervals, bin_size, raw)
    rng = np.random.default_rng(random_state)
    order = rng.permutation(len(raw))
    n_val = int(round(validation_fraction * len(raw))) if n_components is None else 0
    val_index, train_index = np.sort(order[:n_val]), np.sort(order[n_val:])
    # standardise and project with the training trials' statistics only
    train_flat = np.concatenate([raw[i] for i in train_index])
    mean, std = train_flat.mean(0), train_flat.std(0)
    used = std > 0
    if not used.any():
        raise ValueError("Every channel is constant over the training trials; nothing to model.")
    centred = [(y[:, used] - mean[used]) / std[used] for y in raw]
    if n_pcs is not None:
        flat = np.concatenate([centred[i] for i in train_index])
        _, _, Vt = np.linalg.svd(flat, full_matrices=False)
        centred = [y @ Vt[:n_pcs].T for y in centred]
    if u is not None:
        u_flat = np.concatenate([u[i] for i in train_index])
        u_mean, u_std = u_flat.mean(0), np.where(u_flat.std(0) > 0, u_flat.std(0), 1.0)
        u = [(x - u_mean) / u_std for x in u]
    inits = [init] if isinstance(init, str) else list(init)
    if u is None:  # the tensor moments are of lagged inputs
        inits = [i for i in inits if i != "tensor"] or ["kmeans"]
    pick = lambda idx, arrays: None if arrays is None else [arrays[i] for i in idx]  # noqa: E731
    candidates = [n_components] if n_components is not None else range(1, max_components + 1)
    n_train = len(train_index)
    if max(candidates) > n_train:
        raise ValueError(
            f"{max(candidates)} systems cannot be fitted to {n_train} training trials; lower "
            f"{'n_components' if n_components is not None else 'max_components'}."
        )
    u_train, y_train = pick(train_index, u), pick(train_index, centred)
    models, bic, skipped = {}, {}, {}
    for K in candidates:
        for how in inits:
            model = MoLDS(K, state_dim, n_lags, init=how, max_iter=max_iter, n_init=n_init, random_state=random_state)
            try:
                model.fit(u_train, y_train)
            except ValueError as err:  # the moments of these inputs show too few systems, or trials too short
                if how != "tensor":
                    raise
                skipped[K] = str(err)
                continue
            # among initialisations, the higher training likelihood wins (EM's own criterion)
            if K not in models or model.log_likelihood_history_[-1] > models[K].log_likelihood_history_[-1]:
                models[K] = model
        if K not in models:
            raise ValueError(f"No initialisation could fit {K} systems: {skipped[K]} Add 'kmeans' to init.")
        if n_val:
            bic[K] = models[K].bic(pick(val_index, u), pick(val_index, centred))
        if progress_bar:
            print(f"MoLDS K={K} ({models[K].init}): validation BIC {bic.get(K, float('nan')):.1f}")
    best = min(bic, key=bic.get) if bic else candidates[0]
    model = models[best]
    posteriors = model.predict_proba(u, centred)
    return TrialClusters(
        posteriors.argmax(1), posteriors, model, best, bic, centred, u, intervals, train_index, val_index,
        bin_size, empty, skipped,
    )  # fmt: skip


def label_information(labels, truth, n_permutations: int = 1000, random_state=0) -> dict:
    """Mutual information (bits) between cluster labels and a trial label (target, grip type), and
    its permutation p-value: the fraction of shuffles of ``truth`` reaching at least as much."""
    labels, truth = np.asarray(labels), np.asarray(truth)
    _, a = np.unique(labels, return_inverse=True)
    _, b = np.unique(truth, return_inverse=True)

    def mi(x, y):
        joint = np.zeros((x.max() + 1, y.max() + 1))
        np.add.at(joint, (x, y), 1)
        joint /= joint.sum()
        px, py = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
        nz = joint > 0
        return float((joint[nz] * np.log2(joint[nz] / (px @ py)[nz])).sum())

    observed = mi(a, b)
    rng = np.random.default_rng(random_state)
    null = np.array([mi(a, rng.permutation(b)) for _ in range(n_permutations)])
    return {
        "mutual_information_bits": observed,
        "shuffled_mean_bits": float(null.mean()),
        "p_value": float((1 + (null >= observed).sum()) / (1 + n_permutations)),
    }
