"""POYO predictions over a whole segment: a stepped, overlapping sweep of windows whose
predictions are blended into one continuous series (:mod:`spikeinterface_poyo.core.windows`)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch
from tqdm.auto import tqdm

from ...core.spikes import SpikeTokens
from ...core.windows import WindowBlender, sweep_starts, window_queries
from .tokenizer import collate_spike_windows, encoder_inputs


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
    model,
    tokens: SpikeTokens,
    timestamps: np.ndarray,
    session_id: str | None = None,
    batch_size: int = 16,
    overlap: float = 0.5,
    progress_bar: bool = False,
    n_jobs: int | float | None = None,
) -> np.ndarray:
    """Standardised predictions of a POYO ``model`` at ``timestamps`` from one segment's spikes.

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
        (T, dim_out) predictions, in the model's standardised units (NaN where no window reached).
    """
    length = model.sequence_length
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}.")
    vocab_index = np.asarray(model.unit_emb.tokenizer(tokens.unit_ids), dtype=np.int64)
    session_index = model.session_emb.tokenizer(session_id or tokens.session_id)
    blender = WindowBlender(len(timestamps), model.readout.out_features, length)
    if len(timestamps) == 0:
        return blender.total
    starts = sweep_starts(timestamps, length, overlap)
    device = model.device

    def forward(batch_starts: np.ndarray):
        inputs = encoder_inputs(model, collate_spike_windows(tokens, batch_starts, length, vocab_index))
        index, mask, relative = window_queries(timestamps, batch_starts, length)
        with torch.no_grad():  # per thread: workers do not inherit the caller's grad mode
            out = model(
                **inputs,
                session_index=torch.full((len(batch_starts),), session_index, device=device),
                output_timestamps=torch.from_numpy(relative).to(device),
            )
        return index, mask, relative, out.float().cpu().numpy()

    batches = [starts[b : b + batch_size] for b in range(0, len(starts), batch_size)]
    workers = min(_worker_count(n_jobs, device), len(batches))
    was_training = model.training
    model.eval()
    try:
        with _single_threaded_ops(workers > 1), ThreadPoolExecutor(workers) as pool:
            results = pool.map(forward, batches)
            for index, mask, relative, out in tqdm(
                results, total=len(batches), desc="decoding", disable=not progress_bar, unit="batch"
            ):
                blender.add(index, mask, relative, out)
    finally:
        model.train(was_training)
    return blender.result()
