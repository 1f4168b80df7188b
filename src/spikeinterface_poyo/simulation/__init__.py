"""Simulated sessions and recordings with known ground truth: units tuned to a 2-D hand velocity
or position, corpora of heterogeneous sessions, and extracellular voltage from SpikeInterface's
generators. Used by the demo, the tests, the benchmarks and the shipped pretrained model."""

from .recording import simulate_recording
from .regions import simulate_regions
from .sessions import (
    BEHAVIORS,
    TUNING_KINDS,
    random_session_params,
    simulate_corpus,
    simulate_foraging,
    simulate_reaches,
    simulate_session,
    simulate_velocity,
    unit_rates,
)

__all__ = [
    "BEHAVIORS",
    "TUNING_KINDS",
    "random_session_params",
    "simulate_corpus",
    "simulate_foraging",
    "simulate_reaches",
    "simulate_recording",
    "simulate_regions",
    "simulate_session",
    "simulate_velocity",
    "unit_rates",
]
