"""Decode behaviour over a whole session: a stepped, overlapping sweep of windows
whose predictions are blended into one continuous series."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch
from tqdm.auto import tqdm

from .behavior import Behavior
from .model import POYO
from .tokens import SpikeTokens, collate_query_windows, collate_spike_windows, sorting_to_tokens


def sweep_starts(first: float, last: float, length: float, step: float) -> np.ndarray:
    """Window starts such that every time in [first, last] sits near the middle of one window."""
    return np.arange(first - length / 2, last + step, step)


def _center_weight(relative_times: np.ndarray, length: float) -> np.ndarray:
    """Triangular weight: 1 at the window centre, small at its edges (less context there)."""
    return 1.0 - np.abs(2.0 * relative_times / length - 1.0) + 1e-3


def _worker_count(n_jobs, device: torch.device) -> int:
    """Parallel forward passes: SpikeInterface's ``n_jobs`` (-1 all cores, a float a fraction) on a
    CPU; one on a GPU, which runs a batch's kernels in parallel by itself."""
    from spikeinterface.core.job_tools import fix_job_kwargs

    if device.type != "cpu":
        return 1
    return max(1, int(fix_job_kwargs({} if n_jobs is None else {"n_jobs": n_jobs})["n_jobs"]))


@contextmanager
def _single_threaded_ops(active: bool):
    """Run each torch operation on its calling thread, so that workers, not one operation's
    threads, share the cores; the caller's setting is restored afterwards."""
    threads = torch.get_num_threads()
    if active:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def predict_tokens(
    model: POYO,
    tokens: SpikeTokens,
    timestamps: np.ndarray,
    session_id: str | None = None,
    batch_size: int = 16,
    overlap: float = 0.5,
    progress_bar: bool = False,
    n_jobs: int | float | None = None,
) -> np.ndarray:
    """Standardised predictions of ``model`` at ``timestamps`` from one segment's spikes.

    Parameters
    ----------
    model : POYO
        A model whose vocabulary holds the segment's units.
    tokens : SpikeTokens
        The segment.
    timestamps : np.ndarray
        (T,) sorted times in seconds.
    session_id : str or None
        Session embedding to query with; defaults to ``tokens.session_id``.
    batch_size : int, default: 16
        Windows per forward pass (small batches keep a CPU's caches warm).
    overlap : float, default: 0.5
        Fraction of a window shared with the next one.
    progress_bar : bool, default: False
        Show a tqdm bar over batches.
    n_jobs : int, float or None, default: None
        On a CPU, forward passes run this many at a time, each single-threaded (-1: one per
        core). None takes SpikeInterface's global job setting (``si.set_global_job_kwargs``);
        with 1, one pass at a time uses torch's own threads. Ignored on a GPU.

    Returns
    -------
    np.ndarray
        (T, dim_out) predictions, in the model's standardised units.
    """
    length = model.sequence_length
    step = length * (1.0 - overlap)
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}.")
    vocab_index = np.asarray(model.unit_emb.tokenizer(tokens.unit_ids), dtype=np.int64)
    session_index = model.session_emb.tokenizer(session_id or tokens.session_id)
    dim_out = model.readout.out_features
    total = np.zeros((len(timestamps), dim_out))
    weight = np.zeros(len(timestamps))
    if len(timestamps) == 0:
        return total
    starts = sweep_starts(timestamps[0], timestamps[-1], length, step)
    # skip windows that hold no query at all (gaps between trials, say)
    lo = np.searchsorted(timestamps, starts, side="left")
    hi = np.searchsorted(timestamps, starts + length, side="left")
    starts = starts[hi > lo]
    device = model.device

    def forward(batch_starts: np.ndarray):
        inputs = collate_spike_windows(tokens, batch_starts, length, vocab_index)
        index, mask, relative = collate_query_windows(timestamps, batch_starts, length)
        latent_index, latent_timestamps = model.latent_tokens(len(batch_starts))
        with torch.no_grad():  # per thread: workers do not inherit the caller's grad mode
            out = model(
                **{k: v.to(device) for k, v in inputs.items()},
                latent_index=latent_index,
                latent_timestamps=latent_timestamps,
                session_index=torch.full((len(batch_starts),), session_index, device=device),
                output_timestamps=relative.to(device),
            )
        return index, mask, relative.numpy(), out.float().cpu().numpy()

    batches = [starts[b : b + batch_size] for b in range(0, len(starts), batch_size)]
    workers = min(_worker_count(n_jobs, device), len(batches))
    was_training = model.training
    model.eval()
    try:
        with _single_threaded_ops(workers > 1), ThreadPoolExecutor(workers) as pool:
            for index, mask, relative, out in tqdm(
                pool.map(forward, batches), total=len(batches), desc="decoding", disable=not progress_bar, unit="batch"
            ):
                w = _center_weight(relative, length) * mask
                np.add.at(total, index[mask], out[mask] * w[mask][:, None])
                np.add.at(weight, index[mask], w[mask])
    finally:
        model.train(was_training)
    covered = weight > 0
    total[covered] /= weight[covered][:, None]
    total[~covered] = np.nan
    return total


def _model_session(model: POYO, sorting, session_id: str | None) -> str:
    """The session to decode as: given, the model's only one, or the one whose units match."""
    sessions = model.session_emb.vocab[1:]
    if session_id is not None:
        return session_id
    if len(sessions) == 1:
        return sessions[0]
    unit_ids = getattr(sorting, "sorting", sorting).unit_ids
    matching = [s for s in sessions if all(f"{s}/{u}" in model.unit_emb._index for u in unit_ids)]
    if len(matching) == 1:
        return matching[0]
    raise ValueError(f"This model knows {len(sessions)} sessions {sessions}; pass session_id= to pick one.")


def _check_units(model: POYO, tokens: SpikeTokens) -> None:
    unknown = [u for u in tokens.unit_ids if u not in model.unit_emb._index]
    if unknown:
        raise ValueError(
            f"{len(unknown)} of the sorting's {tokens.num_units} units are unknown to the model "
            f"(e.g. {unknown[0]!r}). Decode the sorting the model was trained on (same session_id and "
            "unit ids), or adapt the model to these units with sip.finetune."
        )


def decode_behavior(
    sorting,
    model: POYO,
    timestamps=None,
    session_id: str | None = None,
    rate: float | None = None,
    batch_size: int = 16,
    progress_bar: bool = True,
    n_jobs: int | float | None = None,
) -> Behavior | list[Behavior]:
    """Decode behaviour from a sorting with a trained POYO model.

    Available as ``spikeinterface.full.decode_behavior`` once ``spikeinterface_poyo``
    is imported.

    Parameters
    ----------
    sorting : BaseSorting or SortingAnalyzer
        The spikes to decode from; its units must be in the model's vocabulary.
    model : POYO
        A model from :func:`train_decoder`, :func:`load_model` or ``finetune``.
    timestamps : array_like or None
        Times (seconds) to decode at. By default the sorting's whole span is decoded at
        the sampling rate of the behaviour the model was trained on (or ``rate``).
    session_id : str or None
        Session the sorting belongs to; defaults to the model's only session.
    rate : float or None
        Sampling rate (Hz) of the default timestamps.
    batch_size : int, default: 16
        Windows per forward pass.
    progress_bar : bool, default: True
        Show a tqdm progress bar.
    n_jobs : int, float or None, default: None
        Forward passes run at once on a CPU, each single-threaded (-1: one per core); None
        takes SpikeInterface's global ``n_jobs``. Ignored on a GPU.

    Returns
    -------
    Behavior or list of Behavior
        The decoded series, in the behaviour's own units; one per segment for a
        multi-segment sorting.
    """
    session_id = _model_session(model, sorting, session_id)
    segments = sorting_to_tokens(sorting, session_id=session_id)
    info = model.meta.get("behavior", {})
    stats = model.meta.get("normalization", {}).get(session_id)
    mean = np.asarray(stats["mean"]) if stats else 0.0
    std = np.asarray(stats["std"]) if stats else 1.0
    rate = rate or info.get("rate") or 100.0
    decoded = []
    for tokens in segments:
        _check_units(model, tokens)
        if timestamps is None:
            t = np.arange(tokens.start_time, tokens.end_time, 1.0 / rate)
        else:
            t = np.asarray(timestamps, dtype=np.float64)
            if t.ndim != 1 or not np.all(np.isfinite(t)):
                raise ValueError("timestamps must be a 1-D array of finite times in seconds.")
            t = np.sort(t)
        pred = predict_tokens(
            model, tokens, t, session_id, batch_size=batch_size, progress_bar=progress_bar, n_jobs=n_jobs
        )
        decoded.append(
            Behavior(
                t,
                pred * std + mean,
                name=f"decoded_{info.get('name', 'behavior')}",
                unit=info.get("unit", "unknown"),
                dimension_names=info.get("dimension_names"),
            )
        )
    return decoded[0] if len(decoded) == 1 else decoded
