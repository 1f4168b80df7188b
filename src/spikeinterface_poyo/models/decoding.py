"""Decoding any sorting with any family's model: the session and timestamp checks, then the
family's predictions per segment, returned as :class:`~spikeinterface_poyo.core.behavior.Behavior`."""

from __future__ import annotations

import numpy as np

from ..core.behavior import Behavior
from ..core.spikes import sorting_to_tokens
from ..core.windows import check_context


def check_timestamps(timestamps, start: float, end: float, margin: float) -> np.ndarray:
    """Sorted float64 timestamps, all within the spikes' span (give or take ``margin`` s)."""
    t = np.asarray(timestamps, dtype=np.float64)
    if t.ndim != 1 or len(t) == 0 or not np.all(np.isfinite(t)):
        raise ValueError("timestamps must be a non-empty 1-D array of finite times in seconds.")
    t = np.sort(t)
    outside = (t < start - margin) | (t > end + margin)
    if outside.any():
        hint = ""
        if t[-1] > 100 * max(end, 1.0):
            hint = " They look like milliseconds; pass seconds (timestamps / 1000)."
        raise ValueError(
            f"{int(outside.sum())} of {len(t)} timestamps ({t[0]:.6g} to {t[-1]:.6g}) lie outside the spikes' span "
            f"({start:.3f} to {end:.3f} s): there is nothing to decode them from.{hint} Decode at times (in seconds, "
            "on the sorting's clock) that the recording covers."
        )
    return t


def decode_behavior(
    sorting,
    model,
    timestamps=None,
    session_id: str | None = None,
    rate: float | None = None,
    batch_size: int = 16,
    progress_bar: bool = True,
    n_jobs: int | float | None = None,
    context: str | None = None,
) -> Behavior | list[Behavior]:
    """Decode behaviour from a sorting with a trained model of any family.

    Available as ``spikeinterface.full.decode_behavior`` once ``spikeinterface_poyo`` is imported.

    Parameters
    ----------
    sorting : BaseSorting or SortingAnalyzer
        The spikes to decode from.
    model : BehaviorDecoder or DecoderEstimator
        A trained model (POYO, a baseline...) from :func:`train_decoder`, an estimator's
        ``fit``, :func:`load_model` or :func:`finetune`.
    timestamps : array_like or None
        Times (seconds) to decode at. By default the sorting's whole span is decoded at the
        sampling rate of the behaviour the model was trained on (or ``rate``).
    session_id : str or None
        Which of the model's sessions the sorting is. By default the sorting must be one the
        model was trained on (recognised by its spikes); give the id to decode another
        recording of that session (a time slice, a subset of units).
    rate : float or None
        Sampling rate (Hz) of the default timestamps.
    batch_size : int, default: 16
        Windows per forward pass (for windowed models).
    progress_bar : bool, default: True
        Show a tqdm progress bar.
    n_jobs : int, float or None, default: None
        Forward passes run at once on a CPU, each single-threaded (-1: one per core); None
        takes SpikeInterface's global ``n_jobs``. Ignored on a GPU.
    context : {"centred", "causal"} or None, default: None
        Where the windows sit around each time (POYO): None decodes with the context the model
        was trained with (``model.context``); naming the other one decodes that way on purpose
        (a centred model read at the edge of its windows, or a causal one in the middle). In
        causal context the first window of each segment, and times after its spikes, are NaN.

    Returns
    -------
    Behavior or list of Behavior
        The decoded series, in the behaviour's own units; one per segment for a multi-segment sorting.

    Raises
    ------
    UnknownSessionError
        The sorting is not one of the model's sessions (say which with ``session_id=``), or the
        session id is unknown, or some units are not the session's.
    ValueError
        Timestamps outside the spikes' span (in milliseconds, say).
    """
    decoder = model.fitted_decoder()
    if not hasattr(decoder, "predict_segment"):
        raise TypeError(
            f"A {type(decoder).__name__} model ({decoder.family!r} family) predicts activity, not behaviour; "
            "infer its rates with sip.infer_rates(sorting, model) and decode from them "
            "(sip.decode_from_rates), or decode with a behaviour decoder (POYO, wiener, mlp, gru)."
        )
    options = {}
    if context is not None:
        if check_context(context) not in decoder.contexts:
            raise ValueError(
                f"A {type(decoder).__name__} model ({decoder.family!r} family) decodes with one fixed window "
                "placement; context= chooses POYO's ('centred' or 'causal'). Leave it out for this model."
            )
        options["context"] = context
    session_id = decoder.resolve_session(sorting, session_id)
    info = decoder.behavior_description()
    rate = rate or info.get("rate") or 100.0
    decoded = []
    for tokens in sorting_to_tokens(sorting, session_id=session_id):
        if timestamps is None:
            t = np.arange(tokens.start_time, tokens.end_time, 1.0 / rate)
        else:
            # a sorting without its recording ends at its last spike: allow a second past it
            t = check_timestamps(timestamps, tokens.start_time, tokens.end_time, max(decoder.window_length, 1.0))
        values = decoder.predict_segment(
            tokens, t, session_id, batch_size=batch_size, n_jobs=n_jobs, progress_bar=progress_bar, **options
        )
        decoded.append(
            Behavior(
                t,
                values,
                name=f"decoded_{info.get('name', 'behavior')}",
                unit=info.get("unit", "unknown"),
                dimension_names=info.get("dimension_names"),
            )
        )
    return decoded[0] if len(decoded) == 1 else decoded
