"""SimSort (Zhang et al., NeurIPS 2025): a spike detector and a waveform embedder learned from
simulated tetrodes, then reduction and clustering; registered in SpikeInterface as the
``"simsort"`` sorter (see docs/simsort.md)."""

from .selection import choose_params
from .simulation import TetrodeSettings, sample_settings, simulate_tetrode
from .sorter import SimSortSorter
from .training import simulated_examples, train_detector, train_embedder
from .weights import load_simsort, save_simsort


def train_simsort_models(train_settings, validation_settings, max_time_s: float = 240.0, progress_bar: bool = False):
    """Train a detector and an embedder on simulated tetrodes and choose the sorter's
    thresholds on the validation ones.

    Parameters
    ----------
    train_settings, validation_settings : list of TetrodeSettings
        What to simulate (:func:`sample_settings` draws them widely varied).
    max_time_s : float, default: 240
        Training budget of each model, in seconds.
    progress_bar : bool, default: False

    Returns
    -------
    detector, embedder, chosen, table
        The two models, the thresholds chosen (pass them to :func:`save_simsort`) and the
        validation scores of every candidate.
    """
    train, validation = simulated_examples(train_settings, progress_bar), simulated_examples(validation_settings)
    budget = dict(max_time_s=max_time_s, max_epochs=1000, progress_bar=progress_bar)
    detector = train_detector(train, validation, **budget)
    embedder = train_embedder(train, validation, **budget)
    chosen, table = choose_params(validation, detector, embedder)
    return detector, embedder, chosen, table


__all__ = [
    "SimSortSorter",
    "TetrodeSettings",
    "choose_params",
    "load_simsort",
    "sample_settings",
    "save_simsort",
    "simulate_tetrode",
    "simulated_examples",
    "train_detector",
    "train_embedder",
    "train_simsort_models",
]
