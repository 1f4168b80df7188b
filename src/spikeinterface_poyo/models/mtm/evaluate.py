"""MtM's evaluation (Zhang et al. 2024, section 4), in bits per spike on held-out windows:

- co-smoothing: each neuron hidden in turn and predicted from all others (``neuron`` prompt);
- forward prediction: the last 10 % of the bins predicted from the earlier ones (``causal``);
- inter-region: each region hidden in turn, predicted from the other regions;
- intra-region: everything outside a region hidden, each of its neurons hidden in turn and
  predicted from the rest of its region.

Bits per spike are reported per neuron then averaged (as MtM) and pooled (as the Neural Latents
Benchmark). A model is evaluated with the prompt of each task when it was trained with it, else
with its own (an NDT1 ``temporal`` model has only its own). Also here: the smoothed-spikes ridge
baseline of co-smoothing, and behaviour decoding from inferred rates.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from ...core.metrics import bits_per_spike, r2_per_dimension
from ...core.readout import choose_alpha, choose_logistic_alpha, logistic_fit, ridge_solve, with_intercept
from ..masking import session_regions
from .data import BinnedSession, bin_session
from .rates import expected_counts

TASKS = ("co_smoothing", "forward_prediction", "inter_region", "intra_region")
FORWARD_FRACTION = 0.1


def _summary(result: dict) -> dict:
    return {k: result[k] for k in ("mean", "pooled", "n_excluded")} | {"per_neuron": result["per_neuron"].tolist()}


def _one_at_a_time(model, counts, session, scheme, units, outside=None) -> np.ndarray:
    """Predictions of each of ``units`` hidden alone (with ``outside`` hidden too)."""
    predicted = np.zeros(counts.shape[:2] + (len(units),), dtype=np.float64)
    for j, u in enumerate(units):
        hidden = np.zeros(counts.shape[1:], dtype=bool)
        hidden[:, u] = True
        if outside is not None:
            hidden[:, outside] = True
        predicted[:, :, j] = expected_counts(model, counts, hidden, session, scheme)[:, :, u]
    return predicted


def evaluate_mtm(model, session, session_id: str | None = None, split: str = "test", tasks=TASKS, **binning) -> dict:
    """Bits per spike of an MtM model on a session's held-out windows, for each task.

    Parameters
    ----------
    model : MtM
        A model trained (or finetuned) on the session.
    session : BaseSorting or BinnedSession
        The session; a sorting is binned as the model is, with ``binning`` (for example
        ``events=``) passed to :func:`bin_session`.
    session_id : str or None
        The session's id in the model; recognised from the spikes when None.
    split : {"test", "val"}, default: "test"
        Which windows to score.
    tasks : sequence of str
        Among :data:`TASKS`; region tasks are skipped for sessions with fewer than two regions.

    Returns
    -------
    dict
        Task -> ``mean`` (per neuron, averaged), ``pooled``, ``n_excluded`` (silent neurons) and
        ``per_neuron``; region tasks per region, and over all regions' neurons under ``"all"``;
        ``prompts`` says which prompt each task was run with.
    """
    if not isinstance(session, BinnedSession):
        session_id = model.resolve_session(session, session_id)
        session = bin_session(session, session_id, model.bin_size, model.num_bins, **binning)
    k = model.session_index(session.session_id)
    if model.sessions[k]["unit_ids"] != session.unit_ids:
        raise ValueError(f"The units of session {session.session_id!r} differ from the ones the model was trained on.")
    counts, _ = session.windows(split)
    if not len(counts):
        raise ValueError(f"Session {session.session_id!r} has no {split} window to evaluate.")
    regions = session_regions(session.brain_area)
    results, prompts = {}, {}
    num_units = session.num_units
    if "co_smoothing" in tasks:
        prompts["co_smoothing"] = scheme = model.prompt_for("neuron")
        predicted = _one_at_a_time(model, counts, k, scheme, np.arange(num_units))
        results["co_smoothing"] = _summary(bits_per_spike(counts, predicted))
    if "forward_prediction" in tasks:
        prompts["forward_prediction"] = scheme = model.prompt_for("causal")
        cut = counts.shape[1] - max(1, int(round(FORWARD_FRACTION * counts.shape[1])))
        hidden = np.zeros(counts.shape[1:], dtype=bool)
        hidden[cut:] = True
        predicted = expected_counts(model, counts, hidden, k, scheme)
        results["forward_prediction"] = _summary(bits_per_spike(counts[:, cut:], predicted[:, cut:]))
    if len(regions) >= 2:
        for task, base in (("inter_region", "inter_region"), ("intra_region", "intra_region")):
            if task not in tasks:
                continue
            prompts[task] = scheme = model.prompt_for(base)
            per_region, per_neuron = {}, []
            for name, units in regions.items():
                if task == "inter_region":
                    hidden = np.zeros(counts.shape[1:], dtype=bool)
                    hidden[:, units] = True
                    predicted = expected_counts(model, counts, hidden, k, scheme)[:, :, units]
                else:
                    outside = np.setdiff1d(np.arange(num_units), units)
                    predicted = _one_at_a_time(model, counts, k, scheme, units, outside)
                scored = bits_per_spike(counts[:, :, units], predicted)
                per_region[name] = _summary(scored)
                per_neuron.append(scored["per_neuron"])
            values = np.concatenate(per_neuron)
            per_region["all"] = {"mean": float(np.nanmean(values)), "n_excluded": int(np.isnan(values).sum())}
            results[task] = per_region
    results["prompts"] = prompts
    results["windows"] = int(len(counts))
    return results


def smoothing_cosmoothing(session: BinnedSession, sigmas=(1.0, 2.5, 5.0), alphas=(1e-1, 1e1, 1e3, 1e5)) -> dict:
    """The smoothed-spikes ridge baseline of co-smoothing: each neuron's count predicted by ridge
    regression from the other neurons' Gaussian-smoothed counts (smoothing within each window,
    width in bins and penalty chosen on the validation windows), floored at 5 % of its mean."""
    train, _ = session.windows("train")
    val, _ = session.windows("val")
    test, _ = session.windows("test")
    mean = train.mean(axis=(0, 1))

    def predict(sigma, alpha, target):
        x_train = with_intercept(gaussian_filter1d(train, sigma, axis=1).reshape(-1, train.shape[2]).astype(np.float64))
        x_target = with_intercept(
            gaussian_filter1d(target, sigma, axis=1).reshape(-1, target.shape[2]).astype(np.float64)
        )
        y = train.reshape(-1, train.shape[2]).astype(np.float64)
        gram, cross = x_train.T @ x_train, x_train.T @ y
        out = np.zeros((len(x_target), train.shape[2]))
        n = train.shape[2]
        for u in range(n):
            keep = np.r_[np.arange(u), np.arange(u + 1, n + 1)]  # the other neurons and the intercept
            g = gram[np.ix_(keep, keep)] + alpha * np.eye(len(keep))
            g[-1, -1] -= alpha
            out[:, u] = x_target[:, keep] @ np.linalg.solve(g, cross[keep, u])
        return np.maximum(out, 0.05 * mean + 1e-6).reshape(target.shape)

    scores = {}
    for sigma in sigmas:
        for alpha in alphas:
            scores[(sigma, alpha)] = bits_per_spike(val, predict(sigma, alpha, val))["mean"] if len(val) else 0.0
    sigma, alpha = max(scores, key=lambda key: np.nan_to_num(scores[key], nan=-np.inf))
    result = _summary(bits_per_spike(test, predict(sigma, alpha, test)))
    return result | {"sigma_bins": sigma, "alpha": alpha}


def lagged_features(
    series: np.ndarray, series_t0: float, bin_size: float, timestamps: np.ndarray, lags: int
) -> np.ndarray:
    """(T, lags * N) values of a binned (B, N) ``series`` in the ``lags`` bins ending at each timestamp."""
    end = np.floor((timestamps - series_t0) / bin_size + 1e-9).astype(int)  # bins fully before t
    index = np.clip(end[:, None] - np.arange(1, lags + 1)[None, :], 0, len(series) - 1)
    return series[index].reshape(len(timestamps), -1)


def decode_from_rates(
    rates, behavior, lags: int = 12, train_fraction: float = 0.7, alphas=(1e-1, 1e0, 1e1, 1e2, 1e3, 1e4), folds: int = 5
) -> dict:
    """R² of a cross-validated ridge readout of ``behavior`` from a binned series (rates inferred
    by :func:`infer_rates`, or counts), on the POYO benchmarks' split: fitted on the first
    ``train_fraction`` of the behaviour's time (penalty by contiguous ``folds``-fold
    cross-validation there), scored on the rest.

    Parameters
    ----------
    rates : Behavior
        (B, N) series at bin centres (regular bins).
    behavior : Behavior
        The target, for example hand velocity.
    lags : int, default: 12
        Bins of the series ending at each behaviour sample used as features.

    Returns
    -------
    dict
        ``r2`` per dimension, ``mean``, ``alpha`` and the split times.
    """
    bin_size = float(np.median(np.diff(rates.timestamps)))
    t0 = rates.timestamps[0] - bin_size / 2
    valid = (
        behavior.valid & (behavior.timestamps >= t0 + lags * bin_size) & (behavior.timestamps <= rates.timestamps[-1])
    )
    t, y = behavior.timestamps[valid], behavior.values[valid]
    x = lagged_features(np.sqrt(np.maximum(rates.values, 0)), t0, bin_size, t, lags)
    cut = int(train_fraction * len(t))
    mean, scale = x[:cut].mean(axis=0), x[:cut].std(axis=0) + 1e-6
    x = with_intercept((x - mean) / scale)
    alpha = choose_alpha(x[:cut], y[:cut], alphas, folds)
    r2 = r2_per_dimension(y[cut:], x[cut:] @ ridge_solve(x[:cut], y[:cut], alpha))
    return {"r2": r2.tolist(), "mean": float(np.nanmean(r2)), "alpha": alpha, "test_start": float(t[cut])}


def decode_labels_from_rates(rates, trial_starts, trial_stops, labels, train_fraction: float = 0.7,
                             alphas=(1e-2, 1e-1, 1e0, 1e1, 1e2), folds: int = 5) -> dict:  # fmt: skip
    """Accuracy of a cross-validated logistic readout of per-trial ``labels`` from the mean of a
    binned series (rates or counts) over each trial, fitted on the first ``train_fraction`` of
    the trials and scored on the rest."""
    labels = np.asarray(labels)
    centres = rates.timestamps
    x = np.stack(
        [np.sqrt(rates.values[(centres >= a) & (centres < b)].mean(axis=0)) for a, b in zip(trial_starts, trial_stops)]
    )
    cut = int(train_fraction * len(x))
    mean, scale = x[:cut].mean(axis=0), x[:cut].std(axis=0) + 1e-6
    x = with_intercept((x - mean) / scale)
    alpha = choose_logistic_alpha(x[:cut], labels[:cut], alphas, folds)
    classes = np.unique(labels[:cut])
    w = logistic_fit(x[:cut], labels[:cut], alpha, classes)
    accuracy = float((classes[np.argmax(x[cut:] @ w, axis=1)] == labels[cut:]).mean())
    return {"accuracy": accuracy, "chance": float(1 / len(classes)), "alpha": alpha, "test_trials": int(len(x) - cut)}
