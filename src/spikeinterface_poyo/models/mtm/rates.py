"""Firing rates a trained MtM model infers for every unit and bin of a recording.

A masked model is trained to predict the entries it cannot see, and its outputs at visible
entries are never scored, so a unit's rate is read out while that unit is masked: the units
are split into groups of the training mask's size, and each pass hides one group (``neuron``
scheme; for a model trained only with ``temporal`` masking, groups of bins instead). Windows
overlap by half and are blended with weights highest at their centres.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ...core.behavior import Behavior
from ...core.binning import count_matrix
from ...core.spikes import as_sorting, single_segment_tokens
from .task import masked_input


def _groups(size: int, ratio: float, rng) -> list[np.ndarray]:
    """A random split of ``range(size)`` into groups of about ``ratio * size``."""
    return np.array_split(rng.permutation(size), max(1, int(round(1 / ratio))))


@torch.no_grad()
def expected_counts(model, counts: np.ndarray, hidden: np.ndarray, session: int, scheme: str, batch_size: int = 64):
    """(W, T, N) expected counts for (W, T, N) ``counts`` with ``hidden`` ((T, N) or (W, T, N)) zeroed."""
    hidden = np.broadcast_to(hidden, counts.shape)
    out = []
    for lo in range(0, len(counts), batch_size):
        x = masked_input(counts[lo : lo + batch_size], hidden[lo : lo + batch_size], model.device)
        out.append(model(x, session, scheme).exp().cpu().numpy())
    return np.concatenate(out)


def predict_held_out(model, counts: np.ndarray, session: int, scheme: str, batch_size: int = 32, seed: int = 0):
    """(W, T, N) expected counts, each entry predicted while hidden, for (W, T, N) ``counts``.

    ``scheme`` is ``"neuron"`` (groups of units hidden in turn) or ``"temporal"`` (groups of bins).
    """
    rng = np.random.default_rng(seed)
    axis = 2 if scheme == "neuron" else 1
    out = np.zeros(counts.shape, dtype=np.float32)
    for group in _groups(counts.shape[axis], model.config["mask_ratio"], rng):
        hidden = np.zeros(counts.shape[1:], dtype=bool)
        if axis == 2:
            hidden[:, group] = True
        else:
            hidden[group, :] = True
        out[:, hidden] = expected_counts(model, counts, hidden, session, scheme, batch_size)[:, hidden]
    return out


def session_counts(sorting, unit_ids: list[str], bin_size: float) -> tuple[np.ndarray, float]:
    """(T, N) counts of a one-segment sorting in the columns of ``unit_ids``, and the first bin's start."""
    tokens = single_segment_tokens(as_sorting(sorting))
    own = [u.split("/", 1)[1] for u in tokens.unit_ids]
    missing = [u for u in unit_ids if u not in own]
    if missing:
        raise ValueError(
            f"{len(missing)} of the session's {len(unit_ids)} units are not in this sorting (e.g. {missing[0]!r}); "
            "the model reads every unit of the session, so give the whole sorting it was trained on."
        )
    column = {u: i for i, u in enumerate(own)}
    order = np.array([column[u] for u in unit_ids])
    remap = np.full(len(own), -1)
    remap[order] = np.arange(len(order))
    keep = remap[tokens.unit_index] >= 0
    num_bins = int(np.floor((tokens.end_time - tokens.start_time) / bin_size + 1e-9))
    counts = count_matrix(
        tokens.times[keep], remap[tokens.unit_index[keep]], len(unit_ids), tokens.start_time, bin_size, num_bins
    )
    return counts, tokens.start_time


def infer_rates(
    sorting, model, session_id: str | None = None, batch_size: int = 32, progress_bar: bool = True
) -> Behavior:
    """Firing rates of every unit of a session, in every bin, inferred by an MtM model.

    Parameters
    ----------
    sorting : BaseSorting or SortingAnalyzer
        One segment of a session the model was trained or finetuned on.
    model : MtM
        The trained model.
    session_id : str or None
        The session this is; recognised from the spikes when None.
    batch_size : int, default: 32
        Windows per forward pass.
    progress_bar : bool, default: True
        Show a tqdm progress bar.

    Returns
    -------
    Behavior
        (T, N) rates in Hz at the bin centres, one column per unit of the session
        (``dimension_names`` are the unit ids), named ``inferred_rates``.
    """
    session_id = model.resolve_session(sorting, session_id)
    scheme = "neuron" if "neuron" in model.schemes else "temporal" if "temporal" in model.schemes else None
    if scheme is None:
        raise ValueError(
            f"Rates are read out with neuron or temporal masking, and this model was trained only with "
            f"{list(model.schemes)}; train it with schemes='mtm' (which includes neuron masking)."
        )
    k = model.session_index(session_id)
    unit_ids = model.sessions[k]["unit_ids"]
    counts, t0 = session_counts(sorting, unit_ids, model.bin_size)
    length = model.num_bins
    if len(counts) < length:
        raise ValueError(f"The recording is shorter than one window of the model ({length * model.bin_size:g} s).")
    starts = np.unique(np.r_[np.arange(0, len(counts) - length + 1, length // 2), len(counts) - length])
    weight = 1.0 - np.abs(2.0 * (np.arange(length) + 0.5) / length - 1.0) + 1e-3  # highest at the centre
    total = np.zeros(counts.shape)
    norm = np.zeros(len(counts))
    chunk = 8 * batch_size
    for lo in tqdm(range(0, len(starts), chunk), desc="inferring rates", disable=not progress_bar):
        s = starts[lo : lo + chunk]
        windows = np.stack([counts[i : i + length] for i in s])
        predicted = predict_held_out(model, windows, k, scheme, batch_size)
        for i, p in zip(s, predicted):
            total[i : i + length] += p * weight[:, None]
            norm[i : i + length] += weight
    rates = total / norm[:, None] / model.bin_size
    times = t0 + (np.arange(len(counts)) + 0.5) * model.bin_size
    return Behavior(times, rates, name="inferred_rates", unit="Hz", dimension_names=list(unit_ids))
