"""Simulated sessions with known ground truth: units tuned to a 2-D hand velocity.

Used by the demo, the tests and the benchmarks, so the package can show decoding
end to end without shipping anyone's data.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from .behavior import Behavior


def simulate_velocity(duration: float, rate: float, rng: np.random.Generator, timescale: float = 0.4) -> np.ndarray:
    """Smooth 2-D velocity (T, 2): an Ornstein-Uhlenbeck process with unit variance."""
    n = int(round(duration * rate))
    dt = 1.0 / rate
    decay = np.exp(-dt / timescale)
    noise = rng.normal(size=(n, 2)) * np.sqrt(1 - decay**2)
    return lfilter([1.0], [1.0, -decay], noise, axis=0)


def tuned_rates(velocity: np.ndarray, num_units: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Firing rates (T, U) of log-linear, cosine-tuned units and their tuning parameters."""
    baseline = rng.uniform(2.0, 20.0, num_units)
    preferred = rng.uniform(0, 2 * np.pi, num_units)
    gain = rng.uniform(0.3, 1.0, num_units)
    direction = np.stack([np.cos(preferred), np.sin(preferred)], axis=1)  # (U, 2)
    drive = velocity @ direction.T * gain  # (T, U)
    rates = baseline * np.exp(drive - gain**2 / 2)  # keeps the mean rate near baseline
    return rates, {"baseline_hz": baseline, "preferred_direction": preferred, "gain": gain}


def simulate_session(
    duration: float = 300.0,
    num_units: int = 60,
    behavior_rate: float = 50.0,
    lag: float = 0.1,
    sampling_frequency: float = 30000.0,
    seed: int = 0,
):
    """Simulate a sorting whose units are cosine-tuned to a 2-D velocity.

    Each unit fires as an inhomogeneous Poisson process whose log-rate is linear in
    the velocity ``lag`` seconds later (motor cortex leads movement).

    Parameters
    ----------
    duration : float, default: 300
        Length of the session in seconds.
    num_units : int, default: 60
        Number of units.
    behavior_rate : float, default: 50
        Sampling rate of the velocity in Hz.
    lag : float, default: 0.1
        How far the spikes lead the behaviour, in seconds.
    sampling_frequency : float, default: 30000
        Sampling frequency of the sorting.
    seed : int, default: 0
        Random seed.

    Returns
    -------
    sorting : NumpySorting
        The spikes, with the tuning parameters as unit properties.
    behavior : Behavior
        The velocity (arbitrary units, unit variance per dimension).
    """
    from spikeinterface.core import NumpySorting

    rng = np.random.default_rng(seed)
    fine_rate = 1000.0  # spikes are drawn on a 1 ms grid
    velocity = simulate_velocity(duration + lag, fine_rate, rng)
    shift = int(round(lag * fine_rate))
    rates, tuning = tuned_rates(velocity[shift:], num_units, rng)  # rate at t follows velocity at t + lag
    counts = rng.poisson(rates / fine_rate)
    bins, units = np.nonzero(counts)
    repeats = counts[bins, units]
    bins, units = np.repeat(bins, repeats), np.repeat(units, repeats)
    times = (bins + rng.random(len(bins))) / fine_rate
    order = np.argsort(times, kind="stable")
    samples = np.minimum((times[order] * sampling_frequency).astype(np.int64), int(duration * sampling_frequency) - 1)
    sorting = NumpySorting.from_samples_and_labels(
        [samples], [units[order]], sampling_frequency, unit_ids=np.arange(num_units)
    )
    for key, value in tuning.items():
        sorting.set_property(key, value)

    t_fine = np.arange(len(velocity) - shift) / fine_rate
    t_behavior = np.arange(0, duration, 1.0 / behavior_rate)
    values = np.stack([np.interp(t_behavior, t_fine, velocity[: len(t_fine), d]) for d in range(2)], axis=1)
    return sorting, Behavior(t_behavior, values, name="velocity", unit="a.u.", dimension_names=["x", "y"])
