"""Ground-truth tetrode recordings from SpikeInterface's generators: what SimSort's detector
and embedder learn from, and what its benchmark sorts.

A recording is drawn from a :class:`TetrodeSettings` (unit count, noise, sampling rate, and the
ranges the templates' amplitudes, widths and the units' firing rates are drawn from);
:func:`sample_settings` draws many of them, varied widely, for training.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

#: Centre-to-centre distance of the four contacts of a tetrode, on a 2 x 2 grid (the reference's probe).
TETRODE_PITCH_UM = 13.0


@dataclass(frozen=True)
class TetrodeSettings:
    """One simulated tetrode recording.

    Parameters
    ----------
    duration : float
        Seconds.
    num_units : int
        Neurons near the tetrode.
    noise_level : float
        Standard deviation of the background noise, in the templates' µV.
    sampling_frequency : float
        Hz.
    amplitude_range : tuple of float
        Range of the templates' scale (SpikeInterface's ``alpha``; the largest trough is about
        this many µV on the nearest contact).
    repolarization_ms_range : tuple of float
        Range of the templates' repolarisation time, which sets a spike's width.
    firing_rate_range : tuple of float
        Range of the units' mean firing rates, Hz.
    seed : int
        Seed of the units' positions, templates, spike trains and noise.
    """

    duration: float = 60.0
    num_units: int = 8
    noise_level: float = 5.0
    sampling_frequency: float = 30000.0
    amplitude_range: tuple[float, float] = (100.0, 500.0)
    repolarization_ms_range: tuple[float, float] = (0.5, 0.8)
    firing_rate_range: tuple[float, float] = (2.0, 15.0)
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: The ranges :func:`sample_settings` draws training recordings from (wider than a benchmark's).
TRAINING_RANGES = dict(
    num_units=(2, 14),
    noise_level=(2.0, 15.0),
    sampling_frequency=(20000.0, 24000.0, 25000.0, 30000.0, 32000.0),
    amplitude_low=(40.0, 200.0),
    amplitude_span=(100.0, 500.0),
    repolarization_low=(0.3, 0.6),
    repolarization_span=(0.1, 0.5),
    firing_rate_high=(5.0, 30.0),
)


def sample_settings(num: int, seed: int, duration: float = 30.0, ranges: dict | None = None) -> list[TetrodeSettings]:
    """``num`` recordings' settings drawn from ``ranges`` (default :data:`TRAINING_RANGES`),
    each with its own seed (from ``seed``), so training sees many probes' worth of units, noise
    levels and sampling rates."""
    r = {**TRAINING_RANGES, **(ranges or {})}
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num):
        low_amp, low_rep = rng.uniform(*r["amplitude_low"]), rng.uniform(*r["repolarization_low"])
        out.append(
            TetrodeSettings(
                duration=duration,
                num_units=int(rng.integers(r["num_units"][0], r["num_units"][1] + 1)),
                noise_level=float(rng.uniform(*r["noise_level"])),
                sampling_frequency=float(rng.choice(r["sampling_frequency"])),
                amplitude_range=(low_amp, low_amp + rng.uniform(*r["amplitude_span"])),
                repolarization_ms_range=(low_rep, low_rep + rng.uniform(*r["repolarization_span"])),
                firing_rate_range=(1.0, float(rng.uniform(*r["firing_rate_high"]))),
                seed=int(rng.integers(2**31 - 1)),
            )
        )
    return out


def simulate_tetrode(settings: TetrodeSettings | None = None, **overrides):
    """A ground-truth tetrode recording and its sorting.

    Parameters
    ----------
    settings : TetrodeSettings or None
        What to simulate; default :class:`TetrodeSettings`.
    **overrides
        Fields of the settings to change.

    Returns
    -------
    recording : BaseRecording
        Four channels on a 2 x 2 grid (:data:`TETRODE_PITCH_UM`), noise and injected templates,
        in µV, generated lazily.
    sorting : BaseSorting
        The true spike trains; each spike at its template's peak sample, and the units'
        ``gt_unit_locations`` and ``main_channel_id`` as properties.
    """
    from spikeinterface.core import generate_ground_truth_recording

    s = dataclasses.replace(settings or TetrodeSettings(), **overrides)
    if s.num_units < 1 or s.duration <= 0 or s.noise_level < 0:
        raise ValueError(f"Need num_units >= 1, duration > 0 and noise_level >= 0, got {s}.")
    rng = np.random.default_rng(s.seed)
    rates = rng.uniform(*s.firing_rate_range, s.num_units)
    return generate_ground_truth_recording(
        durations=[s.duration],
        sampling_frequency=s.sampling_frequency,
        num_channels=4,
        num_units=s.num_units,
        generate_probe_kwargs=dict(
            num_columns=2,
            xpitch=TETRODE_PITCH_UM,
            ypitch=TETRODE_PITCH_UM,
            contact_shapes="circle",
            contact_shape_params={"radius": 6},
        ),  # fmt: skip
        generate_sorting_kwargs=dict(firing_rates=rates, refractory_period_ms=2.0),
        generate_templates_kwargs=dict(
            unit_params=dict(alpha=s.amplitude_range, repolarization_ms=s.repolarization_ms_range)
        ),
        generate_unit_locations_kwargs=dict(margin_um=15.0, minimum_z=5.0, maximum_z=40.0, minimum_distance=5.0),
        noise_kwargs=dict(noise_levels=s.noise_level, strategy="on_the_fly"),
        seed=s.seed,
    )


def spike_labels(sorting, num_samples: int, half_width: int, segment_index: int = 0) -> np.ndarray:
    """(num_samples,) True within ``half_width`` samples of any true spike: the detector's target.

    Parameters
    ----------
    sorting : BaseSorting
        The true spike trains (spike frames at the peaks, as :func:`simulate_tetrode` gives them).
    num_samples : int
        Length of the segment.
    half_width : int
        Samples either side of a peak that count as the spike.
    segment_index : int, default: 0
        Which segment.
    """
    if half_width < 0:
        raise ValueError(f"half_width must be >= 0 samples, got {half_width}.")
    frames = sorting.to_spike_vector(concatenated=False)[segment_index]["sample_index"]
    edges = np.zeros(num_samples + 1, dtype=np.int64)  # +1 at a window's start, -1 after its end
    np.add.at(edges, np.clip(frames - half_width, 0, num_samples), 1)
    np.add.at(edges, np.clip(frames + half_width + 1, 0, num_samples), -1)
    return np.cumsum(edges[:-1]) > 0
