"""Sessions of several brain regions with known structure, for checking region-level prediction:
each region has private latent dynamics, one region is driven by another with a lag, one is
independent of both."""

from __future__ import annotations

import numpy as np

from .sessions import FINE_RATE, simulate_velocity


def simulate_regions(
    duration: float = 300.0,
    units_per_region: int = 30,
    lag: float = 0.1,
    coupling: float = 0.8,
    latent_dim: int = 2,
    timescale: float = 0.3,
    firing_rates: tuple[float, float] = (2.0, 15.0),
    gain: float = 0.7,
    bin_size: float = 0.02,
    sampling_frequency: float = 30000.0,
    seed: int = 0,
):
    """Simulate three regions: ``"source"``, ``"driven"`` (follows the source ``lag`` s later)
    and ``"independent"``.

    Each region has a ``latent_dim``-dimensional Ornstein-Uhlenbeck latent (unit variance,
    ``timescale`` s). The driven region's latent is ``coupling`` times a random rotation of the
    source's latent ``lag`` seconds earlier plus ``sqrt(1 - coupling**2)`` times its own, so it
    keeps unit variance. Every unit's log rate is its baseline plus ``gain`` times a random unit
    loading on its region's latent; spikes are Poisson on a 1 ms grid.

    Parameters
    ----------
    duration : float, default: 300
        Seconds.
    units_per_region : int, default: 30
        Units in each region.
    lag : float, default: 0.1
        How far the driven region lags the source, in seconds.
    coupling : float, default: 0.8
        Share (correlation) of the driven latent explained by the lagged source latent, in [0, 1].
    latent_dim : int, default: 2
        Dimensions of each region's latent.
    timescale : float, default: 0.3
        Time constant of the latents in seconds.
    firing_rates : (float, float), default: (2, 15)
        Range of the units' baseline rates in Hz (uniform).
    gain : float, default: 0.7
        Modulation depth of the log rate per latent standard deviation.
    bin_size : float, default: 0.02
        Bin of the returned true expected counts.
    sampling_frequency : float, default: 30000
        Sampling frequency of the sorting.
    seed : int, default: 0
        Random seed.

    Returns
    -------
    sorting : NumpySorting
        The units, with ``brain_area`` ("source", "driven", "independent") as a unit property.
    truth : dict
        ``rates`` ((T, N) expected counts per ``bin_size`` bin), ``bin_edges`` ((T + 1,) seconds),
        ``latents`` (region -> (T, latent_dim) latent at the bin centres), and the structure:
        ``driver``, ``driven``, ``independent``, ``lag_s``, ``coupling``.
    """
    from spikeinterface.core import NumpySorting

    if not 0 <= coupling <= 1:
        raise ValueError(f"coupling must be in [0, 1], got {coupling}.")
    if lag < 0 or lag >= duration:
        raise ValueError(f"lag must be in [0, duration), got {lag}.")
    if bin_size <= 0 or bin_size > duration:
        raise ValueError(f"bin_size must be positive and at most the duration, got {bin_size}.")
    rng = np.random.default_rng(seed)
    shift = int(round(lag * FINE_RATE))
    num_rows = int(round(duration * FINE_RATE))

    def latent(rows):  # (rows, latent_dim) unit-variance OU, two dimensions per draw
        parts = [simulate_velocity(rows / FINE_RATE, FINE_RATE, rng, timescale) for _ in range((latent_dim + 1) // 2)]
        return np.concatenate(parts, axis=1)[:rows, :latent_dim]

    source = latent(num_rows + shift)
    rotation, _ = np.linalg.qr(rng.normal(size=(latent_dim, latent_dim)))
    driven = coupling * source[:num_rows] @ rotation + np.sqrt(1 - coupling**2) * latent(num_rows)
    latents = {"source": source[shift:], "driven": driven, "independent": latent(num_rows)}

    regions = np.repeat(list(latents), units_per_region)
    loadings = rng.normal(size=(len(regions), latent_dim))
    loadings /= np.linalg.norm(loadings, axis=1, keepdims=True)
    baseline = rng.uniform(*firing_rates, len(regions))
    log_rate = np.empty((num_rows, len(regions)))
    for name, z in latents.items():
        units = regions == name
        log_rate[:, units] = np.log(baseline[units]) + gain * z @ loadings[units].T - gain**2 / 2
    rates_hz = np.exp(log_rate)

    counts = rng.poisson(rates_hz / FINE_RATE)
    rows, units = np.nonzero(counts)
    repeats = counts[rows, units]
    rows, units = np.repeat(rows, repeats), np.repeat(units, repeats)
    times = (rows + rng.random(len(rows))) / FINE_RATE
    samples = np.minimum((times * sampling_frequency).astype(np.int64), int(duration * sampling_frequency) - 1)
    order = np.lexsort((samples, units))
    keep = np.ones(len(order), dtype=bool)  # one spike per unit and sample, as a unit cannot fire twice at once
    keep[1:] = (np.diff(samples[order]) != 0) | (np.diff(units[order]) != 0)
    order = order[keep]
    by_time = order[np.argsort(samples[order], kind="stable")]
    sorting = NumpySorting.from_samples_and_labels(
        [samples[by_time]], [units[by_time]], sampling_frequency, unit_ids=np.arange(len(regions))
    )
    sorting.set_property("brain_area", regions)

    per_bin = int(round(bin_size * FINE_RATE))
    num_bins = num_rows // per_bin
    binned = rates_hz[: num_bins * per_bin].reshape(num_bins, per_bin, -1).sum(axis=1) / FINE_RATE
    centres = (np.arange(num_bins) * per_bin + per_bin // 2).astype(int)
    truth = {
        "rates": binned,
        "bin_edges": np.arange(num_bins + 1) * per_bin / FINE_RATE,
        "latents": {name: z[centres] for name, z in latents.items()},
        "driver": "source",
        "driven": "driven",
        "independent": "independent",
        "lag_s": shift / FINE_RATE,
        "coupling": float(coupling),
    }
    return sorting, truth
