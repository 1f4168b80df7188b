"""POYO predictions over a whole segment: a stepped, overlapping sweep of windows whose
predictions are blended into one continuous series (centred context), or one window ending at
each prediction time (causal context); see :mod:`spikeinterface_poyo.core.windows`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
from tqdm.auto import tqdm

from ...core.spikes import SpikeTokens
from ...core.windows import WindowBlender, causal_windows, check_context, sweep_starts, window_queries
from .tokenizer import collate_spike_windows, encoder_inputs


def _worker_count(n_jobs, device: torch.device) -> int:
    """Parallel forward passes: SpikeInterface's ``n_jobs`` (-1 all cores, a float a fraction) on a
    CPU; one on a GPU, which runs a batch's kernels in parallel by itself."""
    from spikeinterface.core.job_tools import fix_job_kwargs

    if device.type != "cpu" or n_jobs == 1:  # a stream asks for 1 at every push: no job-kwarg lookup
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
    context: str | None = None,
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
        Fraction of a window shared with the next one (centred context).
    progress_bar : bool, default: False
        Show a tqdm bar over batches.
    n_jobs : int, float or None, default: None
        On a CPU, forward passes run this many at a time, each single-threaded (-1: one per
        core). None takes SpikeInterface's global job setting (``si.set_global_job_kwargs``);
        with 1, one pass at a time uses torch's own threads. Ignored on a GPU.
    context : {"centred", "causal"} or None, default: None
        Where the windows sit (see :mod:`spikeinterface_poyo.core.windows`); None takes the
        model's own (``model.context``, set at training).

    Returns
    -------
    np.ndarray
        (T, dim_out) predictions, in the model's standardised units. NaN where no window reached;
        in causal context also before one full window of the segment (``tokens.start_time``) has
        passed and after its end (``tokens.end_time``).
    """
    length = model.sequence_length
    context = model.context if context is None else check_context(context)
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}.")
    vocab_index = np.asarray(model.unit_emb.tokenizer(tokens.unit_ids), dtype=np.int64)
    session_index = model.session_emb.tokenizer(session_id or tokens.session_id)
    # a causal time is read from its one window: averaged with weight 1, it is that window's value
    blender = WindowBlender(len(timestamps), model.readout.out_features, length, triangular=context == "centred")
    if len(timestamps) == 0:
        return blender.total
    if context == "causal":
        starts, *queries = causal_windows(timestamps, length, tokens.start_time, tokens.end_time)

        def window_slice(b: slice):
            return tuple(q[b] for q in queries)
    else:
        starts = sweep_starts(timestamps, length, overlap)

        def window_slice(b: slice):
            return window_queries(timestamps, starts[b], length)

    device = model.device

    def forward(b: slice):
        batch_starts = starts[b]
        inputs = encoder_inputs(model, collate_spike_windows(tokens, batch_starts, length, vocab_index))
        index, mask, relative = window_slice(b)
        with torch.no_grad():  # per thread: workers do not inherit the caller's grad mode
            out = model(
                **inputs,
                session_index=torch.full((len(batch_starts),), session_index, device=device),
                output_timestamps=torch.from_numpy(relative).to(device),
            )
        return index, mask, relative, out.float().cpu().numpy()

    batches = [slice(b, b + batch_size) for b in range(0, len(starts), batch_size)]
    workers = max(1, min(_worker_count(n_jobs, device), len(batches)))  # no batch: nothing has context
    was_training = model.training
    if any(m.training for m in model.modules()):  # setting the mode is slow: not on each call of a stream
        model.eval()
    # one worker runs on this thread: a pool's thread start-up would cost a stream its latency
    pool = ThreadPoolExecutor(workers) if workers > 1 else nullcontext()
    try:
        with _single_threaded_ops(workers > 1), pool:
            results = pool.map(forward, batches) if workers > 1 else map(forward, batches)
            for index, mask, relative, out in tqdm(
                results, total=len(batches), desc="decoding", disable=not progress_bar, unit="batch"
            ):
                blender.add(index, mask, relative, out)
    finally:
        if was_training:
            model.train()  # back to the mode it was in
    return blender.result()
