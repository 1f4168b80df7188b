"""Simulated extracellular recordings: the spikes of :func:`.sessions.simulate_session` turned
into voltage by SpikeInterface's generators."""

from __future__ import annotations

import numpy as np

from .sessions import simulate_session


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
