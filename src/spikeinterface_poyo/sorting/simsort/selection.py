"""Choosing the sorter's two thresholds on validation simulations (never on a benchmark's
recordings): the detector's probability cut and MeanShift's bandwidth."""

from __future__ import annotations

import itertools

import numpy as np

from .pipeline import sort_tetrode

#: The grid searched (the detector's weighted loss leaves its probabilities high: cuts near 1).
THRESHOLDS = (0.8, 0.9, 0.95, 0.97, 0.99)
BANDWIDTH_QUANTILES = (0.05, 0.1, 0.15, 0.2)


def sorting_accuracy(example: dict, samples: np.ndarray, labels: np.ndarray) -> float:
    """Mean accuracy over the true units of a simulated ``example`` (SpikeInterface's
    ``compare_sorter_to_ground_truth``, exhaustive ground truth)."""
    from spikeinterface.comparison import compare_sorter_to_ground_truth
    from spikeinterface.core import NumpySorting

    fs = example["sampling_frequency"]
    truth = NumpySorting.from_samples_and_labels([example["peaks"]], [example["units"]], fs)
    found = NumpySorting.from_samples_and_labels([samples], [labels], fs)
    return float(compare_sorter_to_ground_truth(truth, found, exhaustive_gt=True).get_performance()["accuracy"].mean())


def choose_params(validation: list[dict], detector, embedder, thresholds=THRESHOLDS,
                  quantiles=BANDWIDTH_QUANTILES) -> tuple[dict, list[dict]]:  # fmt: skip
    """The probability threshold and bandwidth quantile with the best mean accuracy over the
    ``validation`` simulations, and every grid point's scores."""
    table = []
    for threshold, quantile in itertools.product(thresholds, quantiles):
        params = dict(probability_threshold=threshold, bandwidth_quantile=quantile)
        scores = [sorting_accuracy(e, *sort_tetrode(e["traces"], e["sampling_frequency"], detector, embedder, params))
                  for e in validation]  # fmt: skip
        table.append({**params, "accuracy": scores, "mean_accuracy": float(np.mean(scores))})
    best = max(table, key=lambda row: row["mean_accuracy"])
    return {k: best[k] for k in ("probability_threshold", "bandwidth_quantile")}, table
