"""What a bottleneck curve is compared with: spikes circularly shifted against the behaviour (a
random baseline that keeps the spikes' statistics) and the behaviour-only autoregressive reference."""

from __future__ import annotations

import numpy as np

from ...core.behavior import Behavior
from ...core.intervals import inside
from ...core.metrics import r2_per_dimension
from ...core.readout import choose_alpha, ridge_solve, with_intercept
from ...core.spikes import SpikeTokens

#: Ridge penalties tried for the autoregressive reference.
AR_ALPHAS = (1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)


def draw_shift(span: float, min_shift: float, rng: np.random.Generator) -> float:
    """A circular shift in ``[min_shift, span - min_shift]`` seconds, so that every spike moves at
    least ``min_shift`` against the behaviour, whichever way round the circle is counted."""
    if span < 2 * min_shift:
        raise ValueError(
            f"The spikes span {span:.1f} s: too short to shift them circularly by at least {min_shift:g} s against "
            f"the behaviour (it takes {2 * min_shift:g} s). Give a longer recording, a smaller min_shift_s, or leave "
            "'shifted' out of baselines."
        )
    return float(rng.uniform(min_shift, span - min_shift))


def circular_shift(tokens: SpikeTokens, shift: float) -> SpikeTokens:
    """The same spikes moved ``shift`` seconds later, those past the end wrapped to the start."""
    span = tokens.end_time - tokens.start_time
    times = tokens.start_time + np.mod(tokens.times - tokens.start_time + shift, span)
    order = np.argsort(times, kind="stable")
    return SpikeTokens(
        times=times[order],
        unit_index=tokens.unit_index[order],
        unit_ids=list(tokens.unit_ids),
        session_id=tokens.session_id,
        start_time=tokens.start_time,
        end_time=tokens.end_time,
        unit_properties=tokens.unit_properties,
        segment_index=tokens.segment_index,
    )


def past_behavior(behavior: Behavior, timestamps: np.ndarray, lags: int, step: float) -> np.ndarray:
    """(T, lags * D) the behaviour at ``t - j * step`` for ``j = 1..lags`` (interpolated); NaN where
    that time falls outside the behaviour's contiguous stretches (no interpolation across gaps)."""
    valid = behavior.valid
    t, values = behavior.timestamps[valid], behavior.values[valid]
    stretches = behavior.contiguous_intervals()
    columns = []
    for j in range(1, lags + 1):
        past = timestamps - j * step
        known = inside(past, stretches) & (past >= t[0])
        for d in range(values.shape[1]):
            columns.append(np.where(known, np.interp(past, t, values[:, d]), np.nan))
    return np.stack(columns, axis=1)


def autoregressive_r2(behavior: Behavior, train: tuple, test: tuple, lags: int, step: float) -> float:
    """Test R² (mean over dimensions) of a ridge regression of the behaviour on its own past
    (:func:`past_behavior`), penalty chosen on contiguous folds of the training samples.

    ``train`` and ``test`` are (timestamps, (T, D) values) pairs of samples of ``behavior``. No spike
    is read: the score tells how much of the behaviour its own recent past predicts. NaN when too few
    samples have a known past.
    """
    parts = []
    for times, values in (train, test):
        x = past_behavior(behavior, np.asarray(times, dtype=np.float64), lags, step)
        keep = np.all(np.isfinite(x), axis=1)
        parts.append((with_intercept(x[keep]), np.asarray(values, dtype=np.float64)[keep]))
    (x_train, y_train), (x_test, y_test) = parts
    if len(x_train) < 10 or len(x_test) < 2:
        return float("nan")
    alpha = choose_alpha(x_train, y_train, AR_ALPHAS)
    return float(np.nanmean(r2_per_dimension(y_test, x_test @ ridge_solve(x_train, y_train, alpha))))
