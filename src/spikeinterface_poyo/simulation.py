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


def simulate_recording(
    duration: float = 120.0,
    num_channels: int = 32,
    num_units: int | None = None,
    noise_level: float = 10.0,
    pitch_um: float = 200.0,
    behavior_rate: float = 50.0,
    lag: float = 0.1,
    sampling_frequency: float = 20000.0,
    seed: int = 0,
    sorting_folder=None,
):
    """Simulate an extracellular recording of units cosine-tuned to a 2-D velocity.

    The spikes come from :func:`simulate_session`; SpikeInterface's generators turn them into
    voltage: :func:`~spikeinterface.core.generate_templates` draws a waveform per unit,
    :func:`~spikeinterface.core.generate_ground_truth_recording` injects it at every spike
    (``InjectTemplatesRecording``) over Gaussian noise. The electrodes sit on a square grid with a
    wide pitch, as on a Utah array, and each unit lies 10-25 µm from one electrode (units are
    dealt to electrodes in turn) with a peak amplitude of 6-25 times the noise, so an electrode
    mostly sees its own unit(s).

    Parameters
    ----------
    duration : float, default: 120
        Length in seconds.
    num_channels : int, default: 32
        Number of electrodes.
    num_units : int or None, default: None
        Number of units; one per electrode when None.
    noise_level : float, default: 10
        Standard deviation of the noise, in µV.
    pitch_um : float, default: 200
        Distance between neighbouring electrodes in µm.
    behavior_rate : float, default: 50
        Sampling rate of the velocity in Hz.
    lag : float, default: 0.1
        How far the spikes lead the behaviour, in seconds.
    sampling_frequency : float, default: 20000
        Sampling frequency of the recording.
    seed : int, default: 0
        Random seed (spikes, waveforms, unit positions and noise).
    sorting_folder : str or Path or None, default: None
        Where to save the true sorting. An in-memory sorting makes the recording impossible to
        serialise, which :func:`spikeinterface.sorters.run_sorter` and process-based ``n_jobs > 1``
        need; with a folder the recording can be sorted.

    Returns
    -------
    recording : BaseRecording
        The simulated voltage with a probe attached (float32, µV).
    sorting : BaseSorting
        The true spikes, with the tuning parameters, ``gt_unit_locations`` and
        ``main_channel_id`` as unit properties.
    behavior : Behavior
        The velocity.
    """
    import warnings

    from probeinterface import generate_multi_columns_probe
    from spikeinterface.core import generate_ground_truth_recording, generate_templates

    num_units = num_channels if num_units is None else num_units
    sorting, behavior = simulate_session(duration, num_units, behavior_rate, lag, sampling_frequency, seed)
    if sorting_folder is not None:
        with warnings.catch_warnings():  # "provenance will not be saved": an in-memory sorting has none
            warnings.simplefilter("ignore", UserWarning)
            sorting = sorting.save(folder=sorting_folder, overwrite=True)

    num_columns = int(np.ceil(np.sqrt(num_channels)))
    per_column = [num_channels // num_columns + (c < num_channels % num_columns) for c in range(num_columns)]
    probe = generate_multi_columns_probe(
        num_columns=num_columns,
        num_contact_per_column=per_column,
        xpitch=pitch_um,
        ypitch=pitch_um,
        contact_shapes="circle",
        contact_shape_params={"radius": 10},
    )
    probe.set_device_channel_indices(np.arange(num_channels))

    rng = np.random.default_rng(seed + 1)
    electrode = rng.permutation(np.arange(num_units) % num_channels)
    unit_locations = np.zeros((num_units, 3))
    unit_locations[:, :2] = probe.contact_positions[electrode] + rng.normal(0.0, 10.0, (num_units, 2))
    unit_locations[:, 2] = rng.uniform(10.0, 25.0, num_units)
    ms_before, ms_after = 1.0, 3.0
    templates = generate_templates(
        probe.contact_positions,
        unit_locations,
        sampling_frequency,
        ms_before,
        ms_after,
        seed=seed,
    )
    # peak amplitudes of 6-25 × the noise: every unit clears a -4.5 × MAD threshold, as on a good array
    peak = np.abs(templates).max(axis=(1, 2))
    templates *= (rng.uniform(6.0, 25.0, num_units) * noise_level / peak)[:, None, None].astype(templates.dtype)
    recording, sorting = generate_ground_truth_recording(
        durations=[duration],
        sampling_frequency=sampling_frequency,
        sorting=sorting,
        probe=probe,
        templates=templates,
        ms_before=ms_before,
        ms_after=ms_after,
        noise_kwargs=dict(noise_levels=noise_level, strategy="on_the_fly"),
        seed=seed,
    )
    sorting.set_property("gt_unit_locations", unit_locations)
    return recording, sorting, behavior
