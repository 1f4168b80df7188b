"""MoLDS: a mixture of linear dynamical systems, one per trial, fitted by Tensor-EM (Gong and
Saxena, ICLR 2026), and ``cluster_trials`` to cluster a session's trials by their dynamics.

Modules: ``lds`` (one system, Kalman filter and smoother, EM statistics and M-step),
``realization`` (Ho-Kalman), ``moments`` (the tensor initialisation), ``model`` (``MoLDS``),
``trials`` (from spikes and trial times to clusters), ``synthetic`` (the paper's settings and
recovery errors).
"""

from .lds import LinearDynamicalSystem
from .model import MoLDS
from .realization import ho_kalman
from .trials import (
    TrialClusters,
    cluster_trials,
    event_inputs,
    label_information,
    movement_onsets,
    trial_intervals,
    trials_from_events,
)

__all__ = [
    "LinearDynamicalSystem",
    "MoLDS",
    "TrialClusters",
    "cluster_trials",
    "event_inputs",
    "ho_kalman",
    "label_information",
    "movement_onsets",
    "trial_intervals",
    "trials_from_events",
]
