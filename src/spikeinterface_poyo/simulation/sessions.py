"""Simulated sessions with known ground truth: units tuned to a 2-D hand velocity or position.

Used by the demo, the tests, the benchmarks and the shipped pretrained model, so the package
can show decoding end to end without shipping anyone's data. :func:`simulate_session` draws one
session; :func:`random_session_params` and :func:`simulate_corpus` draw many sessions that differ
in their units, tuning, latencies, noise, sampling rates and behaviour.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from ..core.behavior import Behavior

#: Behaviours :func:`simulate_session` can draw, each with a 2-D readout: ``"velocity"`` (a smooth
#: random velocity), ``"reaching"`` (the velocity of centre-out reaches with bell-shaped speed
#: profiles, as in M1 centre-out tasks) and ``"position"`` (the position of an animal foraging in
#: a square arena, decoded from place-field-like units).
BEHAVIORS = ("velocity", "reaching", "position")
#: How a unit can be tuned: log-linear (cosine) tuning to the velocity plus a speed term, a
#: Gaussian place field on the position, or none (a constant rate).
TUNING_KINDS = ("velocity", "position", "untuned")
FINE_RATE = 1000.0  # spikes are drawn on a 1 ms grid
CHUNK = 20000  # rows of the 1 ms grid drawn at a time, to bound memory


def simulate_velocity(
    duration: float, rate: float, rng: np.random.Generator, timescale: float = 0.4, dims: int = 2
) -> np.ndarray:
    """Smooth velocity (T, dims), 2-D by default: an Ornstein-Uhlenbeck process with unit variance."""
    n = int(round(duration * rate))
    dt = 1.0 / rate
    decay = np.exp(-dt / timescale)
    noise = rng.normal(size=(n, dims)) * np.sqrt(1 - decay**2)
    return lfilter([1.0], [1.0, -decay], noise, axis=0)


def leaky_integral(velocity: np.ndarray, rate: float, timescale: float = 2.0) -> np.ndarray:
    """Position (T, 2) integrated from a velocity with a leak, so it stays bounded."""
    decay = np.exp(-1.0 / (rate * timescale))
    return lfilter([1.0 / rate], [1.0, -decay], velocity, axis=0)


def simulate_reaches(
    duration: float,
    rate: float,
    rng: np.random.Generator,
    reach_time: tuple[float, float] = (0.6, 1.2),
    hold_time: float = 0.5,
    num_targets: int = 8,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Position and velocity (T, 2) of centre-out reaches with minimum-jerk trajectories.

    The hand reaches from the centre to one of ``num_targets`` targets on the unit circle and
    back, each movement lasting ``reach_time`` seconds (uniform) with a bell-shaped speed
    profile, separated by holds of exponentially distributed length (mean ``hold_time``) during
    which the hand drifts slightly.

    Returns
    -------
    position, velocity : np.ndarray
        (T, 2) each, sampled at ``rate``; the velocity is in target radii per second.
    plan : np.ndarray
        (T, 2) unit vector towards the next target during the hold before each outward reach,
        zero otherwise. Motor cortex fires before a movement, tuned to the reach to come
        (preparatory activity), so a velocity decoder has to learn to stay at zero then.
    """
    n = int(round(duration * rate))
    velocity, plan = np.zeros((n, 2)), np.zeros((n, 2))
    i, at_centre, here = 0, True, np.zeros(2)
    while i < n:
        hold_start = i
        i += int(rng.exponential(hold_time) * rate)
        if i >= n:
            break
        steps = max(2, int(rng.uniform(*reach_time) * rate))
        if at_centre:
            angle = 2 * np.pi * (rng.integers(num_targets) / num_targets) + rng.normal(0, 0.1)
            goal = rng.uniform(0.8, 1.2) * np.array([np.cos(angle), np.sin(angle)])
            plan[hold_start:i] = (goal - here) / np.linalg.norm(goal - here)
        else:
            goal = rng.normal(0, 0.05, 2)
        s = (np.arange(steps) + 0.5) / steps
        profile = 30 * s**2 * (1 - s) ** 2 / (steps / rate)  # minimum-jerk speed, integrates to 1
        stop = min(n, i + steps)
        velocity[i:stop] = np.outer(profile[: stop - i], goal - here)
        i, here, at_centre = stop, goal, not at_centre
    velocity += simulate_velocity(duration, rate, rng, timescale=0.1)[:n] * 0.05 * np.abs(velocity).max()
    return np.cumsum(velocity, axis=0) / rate, velocity, plan


def simulate_foraging(
    duration: float, rate: float, rng: np.random.Generator, timescale: float = 1.0, speed: float = 0.4
) -> tuple[np.ndarray, np.ndarray]:
    """Position and velocity (T, 2) of a smooth random walk reflected inside the square [-1, 1]².

    The velocity is an Ornstein-Uhlenbeck process (``timescale`` s, ``speed`` arena
    half-widths per second per dimension); the walls mirror the position.
    """
    velocity = simulate_velocity(duration, rate, rng, timescale=timescale) * speed
    free = np.cumsum(velocity, axis=0) / rate + rng.uniform(-1, 1, 2)
    folded = np.mod(free + 1, 4)
    position = np.where(folded > 2, 4 - folded, folded) - 1
    return position, np.gradient(position, 1.0 / rate, axis=0)


def behavior_signals(kind: str, duration: float, rate: float, rng: np.random.Generator):
    """Position, velocity and reach plan (T, 2; the plan None but for reaches) of a behaviour in
    :data:`BEHAVIORS`, and which one is read out."""
    if kind == "velocity":
        velocity = simulate_velocity(duration, rate, rng)
        return leaky_integral(velocity, rate), velocity, None, "velocity"
    if kind == "reaching":
        return *simulate_reaches(duration, rate, rng), "velocity"
    if kind == "position":
        position, velocity = simulate_foraging(duration, rate, rng)
        return position, velocity, None, "position"
    raise ValueError(f"behavior must be one of {BEHAVIORS}, got {kind!r}.")


def draw_tuning(
    num_units: int,
    rng: np.random.Generator,
    firing_rates: tuple[float, float],
    log_rates: bool,
    gains: tuple[float, float],
    lag,
    tuning_fractions: dict | None,
    standard_position: np.ndarray,
) -> dict:
    """Tuning parameters of every unit (arrays of length ``num_units``; NaN where one does not apply).

    The first draws (baseline, preferred direction, gain) come first and in this order for every
    session, so sessions simulated with the default settings stay the same as options are added.
    """
    low, high = firing_rates
    baseline = low * (high / low) ** rng.random(num_units) if log_rates else rng.uniform(low, high, num_units)
    tuning = {
        "baseline_hz": baseline,
        "preferred_direction": rng.uniform(0, 2 * np.pi, num_units),
        "gain": rng.uniform(*gains, num_units),
    }
    if np.ndim(lag) == 0:
        tuning["lag_s"] = np.full(num_units, float(lag))
    else:
        tuning["lag_s"] = np.round(rng.uniform(*lag, num_units) * FINE_RATE) / FINE_RATE
    kinds = np.full(num_units, "velocity", dtype=object)
    if tuning_fractions is not None:
        fractions = np.array([tuning_fractions.get(k, 0.0) for k in TUNING_KINDS], dtype=float)
        if (fractions < 0).any() or fractions.sum() <= 0 or set(tuning_fractions) - set(TUNING_KINDS):
            raise ValueError(f"tuning_fractions must map {TUNING_KINDS} to non-negative fractions.")
        counts = np.floor(fractions / fractions.sum() * num_units).astype(int)
        counts[np.argmax(fractions)] += num_units - counts.sum()
        kinds = rng.permutation(np.repeat(np.array(TUNING_KINDS, dtype=object), counts))
        tuning["speed_gain"] = np.where(kinds == "velocity", rng.uniform(-0.2, 0.6, num_units), np.nan)
        centres = standard_position[rng.integers(len(standard_position), size=num_units)]
        place = kinds == "position"
        tuning["field_x"] = np.where(place, centres[:, 0], np.nan)
        tuning["field_y"] = np.where(place, centres[:, 1], np.nan)
        tuning["field_width"] = np.where(place, rng.uniform(0.3, 0.8, num_units), np.nan)
        tuning["field_floor"] = np.where(place, rng.uniform(0.02, 0.1, num_units), np.nan)
        for key in ("preferred_direction", "gain"):
            tuning[key] = np.where(kinds == "velocity", tuning[key], np.nan)
    tuning["tuning"] = kinds.astype(str)
    return tuning


def unit_rates(
    position: np.ndarray, velocity: np.ndarray, tuning: dict, start: int, stop: int, plan: np.ndarray | None = None
) -> np.ndarray:
    """Rates (stop - start, U) on the 1 ms grid; a unit's rate at row i follows the behaviour at i + its lag.

    ``position`` and ``velocity`` are standardised; velocity units are log-linear in the
    velocity (cosine tuning) and the speed, and with a ``plan`` (:func:`simulate_reaches`) in the
    upcoming reach direction; position units have a Gaussian place field.
    """
    kinds = tuning["tuning"]
    rates = np.empty((stop - start, len(kinds)))
    shifts = np.round(tuning["lag_s"] * FINE_RATE).astype(int)
    for shift in np.unique(shifts):
        rows = slice(start + shift, stop + shift)
        for kind in np.unique(kinds[shifts == shift]):
            units = np.flatnonzero((shifts == shift) & (kinds == kind))
            baseline = tuning["baseline_hz"][units]
            if kind == "velocity":
                preferred, gain = tuning["preferred_direction"][units], tuning["gain"][units]
                direction = np.stack([np.cos(preferred), np.sin(preferred)], axis=1)
                drive = velocity[rows] @ direction.T * gain - gain**2 / 2  # mean rate near baseline
                if "speed_gain" in tuning:
                    speed = np.linalg.norm(velocity[rows], axis=1, keepdims=True)
                    drive = drive + tuning["speed_gain"][units] * (speed - 1.0)
                if plan is not None:
                    angle, depth = tuning["preparatory_direction"][units], tuning["preparatory_gain"][units]
                    drive = drive + plan[rows] @ np.stack([np.cos(angle), np.sin(angle)]) * depth
                rates[:, units] = baseline * np.exp(drive)
            elif kind == "position":
                centre = np.stack([tuning["field_x"][units], tuning["field_y"][units]], axis=1)
                distance2 = ((position[rows, None, :] - centre) ** 2).sum(-1)
                bump = np.exp(-distance2 / (2 * tuning["field_width"][units] ** 2))
                floor = tuning["field_floor"][units]
                rates[:, units] = baseline * (floor + (1 - floor) * bump)
            else:
                rates[:, units] = baseline
    return rates


def draw_spikes(
    position, velocity, tuning, num_rows: int, rng, gain_noise: float, plan=None, state_noise: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson spike counts on the 1 ms grid, drawn chunk by chunk; returns (bins, units) per spike.

    With ``state_noise`` the tuning holds ``state_loading`` (U, S): each unit's loadings on S slow
    internal-state latents.
    """
    log_gain = None
    if gain_noise > 0:  # a slow population-wide gain fluctuation unrelated to behaviour
        log_gain = simulate_velocity(num_rows / FINE_RATE, FINE_RATE, rng, timescale=2.0)[:num_rows, 0] * gain_noise
    state = None
    if state_noise > 0:  # slow latents unrelated to behaviour, each unit loading on them its own way
        loading = tuning["state_loading"]
        state = simulate_velocity(num_rows / FINE_RATE, FINE_RATE, rng, timescale=2.0, dims=loading.shape[1])
        state = state[:num_rows] * state_noise
    all_bins, all_units = [], []
    for start in range(0, num_rows, CHUNK):
        stop = min(num_rows, start + CHUNK)
        rates = unit_rates(position, velocity, tuning, start, stop, plan)
        if log_gain is not None:
            rates *= np.exp(log_gain[start:stop, None] - gain_noise**2 / 2)
        if state is not None:  # log-additive, mean rate kept
            rates *= np.exp(state[start:stop] @ loading.T - state_noise**2 * (loading**2).sum(1) / 2)
        counts = rng.poisson(rates / FINE_RATE)
        bins, units = np.nonzero(counts)
        repeats = counts[bins, units]
        all_bins.append(np.repeat(bins + start, repeats))
        all_units.append(np.repeat(units, repeats))
    return np.concatenate(all_bins), np.concatenate(all_units)


def simulate_session(
    duration: float = 300.0,
    num_units: int = 60,
    behavior_rate: float = 50.0,
    lag: float | tuple[float, float] = 0.1,
    sampling_frequency: float = 30000.0,
    seed: int = 0,
    *,
    behavior: str = "velocity",
    tuning_fractions: dict | None = None,
    firing_rates: tuple[float, float] = (2.0, 20.0),
    log_rates: bool = False,
    gains: tuple[float, float] = (0.3, 1.0),
    gain_noise: float = 0.0,
    state_dims: int = 0,
    state_noise: float = 1.0,
    spike_time_precision: float | None = None,
    preparatory_gain: float = 0.0,
):
    """Simulate a sorting whose units are tuned to a 2-D behaviour.

    Each unit fires as an inhomogeneous Poisson process whose rate follows the behaviour
    ``lag`` seconds later (motor cortex leads movement). With the defaults every unit is
    log-linear (cosine) tuned to a smooth random velocity, which is read out.

    Parameters
    ----------
    duration : float, default: 300
        Length of the session in seconds.
    num_units : int, default: 60
        Number of units.
    behavior_rate : float, default: 50
        Sampling rate of the behaviour in Hz.
    lag : float or (float, float), default: 0.1
        How far the spikes lead the behaviour, in seconds; a ``(low, high)`` pair draws one
        lag per unit, uniformly (rounded to 1 ms).
    sampling_frequency : float, default: 30000
        Sampling frequency of the sorting.
    seed : int, default: 0
        Random seed.
    behavior : {"velocity", "reaching", "position"}, default: "velocity"
        What the animal does and what is read out (see :data:`BEHAVIORS`): the velocity of a
        smooth random movement, the velocity of centre-out reaches, or the position of an
        animal foraging in a square arena.
    tuning_fractions : dict or None, default: None
        Fractions of units per kind of tuning, e.g. ``{"velocity": 0.6, "position": 0.3,
        "untuned": 0.1}`` (see :data:`TUNING_KINDS`). None: every unit is velocity-tuned,
        with no speed term. Velocity units are log-linear in the standardised velocity
        (cosine tuning with a random preferred direction and depth ``gain``) plus a random
        speed term; position units have a Gaussian place field on the standardised position,
        centred on a visited place, 0.3-0.8 standard deviations wide, ``baseline_hz`` at its
        peak; untuned units fire at a constant rate.
    firing_rates : (float, float), default: (2, 20)
        Range of the units' baseline rates in Hz.
    log_rates : bool, default: False
        Draw the baseline rates log-uniformly (a long tail of slow units, as in real
        recordings) rather than uniformly.
    gains : (float, float), default: (0.3, 1.0)
        Range of the velocity units' tuning depths (log-rate change per standard deviation).
    gain_noise : float, default: 0
        Standard deviation of a slow (2 s) population-wide log-gain fluctuation that has
        nothing to do with the behaviour: every rate is multiplied by it.
    state_dims : int, default: 0
        Number of slow (2 s) internal-state latents unrelated to the behaviour (arousal,
        spontaneous movements), which often carry more of a real population's variance than
        the task does. Each unit's log rate moves by ``state_noise`` times its own N(0, 1)
        loading on each (properties ``state_loading_0``, ...); its mean rate is kept.
    state_noise : float, default: 1
        Standard deviation of each internal-state latent's contribution per unit loading.
    spike_time_precision : float or None, default: None
        If given, every spike time is redrawn uniformly inside its bin of this width (in
        seconds), as in recordings only available as binned counts.
    preparatory_gain : float, default: 0
        With ``behavior="reaching"`` and ``tuning_fractions``: velocity units also fire
        before each outward reach, log-linear in its direction (see :func:`simulate_reaches`) along a
        preferred direction of their own, with a depth drawn uniformly from
        [0, ``preparatory_gain``] (properties ``preparatory_direction``, ``preparatory_gain``).

    Returns
    -------
    sorting : NumpySorting
        The spikes, with the tuning parameters as unit properties (``tuning``,
        ``baseline_hz``, ``preferred_direction``, ``gain``, ``lag_s``, and with
        ``tuning_fractions`` ``speed_gain`` and the place fields ``field_x``, ``field_y``,
        ``field_width``, ``field_floor`` in standardised position, with ``state_dims``
        ``state_loading_0``, ...; NaN where a parameter does not apply to a unit).
    behavior : Behavior
        The read-out velocity or position (arbitrary units).
    """
    from spikeinterface.core import NumpySorting

    rng = np.random.default_rng(seed)
    max_lag = float(np.max(lag))
    if np.min(lag) < 0:
        raise ValueError(f"lag must not be negative, got {lag}.")
    position, velocity, plan, readout = behavior_signals(behavior, duration + max_lag, FINE_RATE, rng)
    standard_velocity = velocity if behavior == "velocity" else velocity / velocity.std()
    standard_position = (position - position.mean(axis=0)) / position.std(axis=0)
    tuning = draw_tuning(num_units, rng, firing_rates, log_rates, gains, lag, tuning_fractions, standard_position)
    if preparatory_gain > 0 and plan is not None and tuning_fractions is not None:
        velocity_units = tuning["tuning"] == "velocity"
        tuning["preparatory_direction"] = np.where(velocity_units, rng.uniform(0, 2 * np.pi, num_units), np.nan)
        tuning["preparatory_gain"] = np.where(velocity_units, rng.uniform(0, preparatory_gain, num_units), np.nan)
    else:
        plan = None
    num_rows = len(velocity) - int(round(max_lag * FINE_RATE))
    if state_dims > 0:
        tuning["state_loading"] = rng.normal(size=(num_units, state_dims))
    noise = state_noise if state_dims > 0 else 0.0
    bins, units = draw_spikes(standard_position, standard_velocity, tuning, num_rows, rng, gain_noise, plan, noise)
    times = (bins + rng.random(len(bins))) / FINE_RATE
    if spike_time_precision is not None:
        times = (np.floor(times / spike_time_precision) + rng.random(len(times))) * spike_time_precision
    order = np.argsort(times, kind="stable")
    samples = np.minimum((times[order] * sampling_frequency).astype(np.int64), int(duration * sampling_frequency) - 1)
    labels = units[order]
    # two draws of one unit can land on one sample; a unit cannot fire twice at once (nwbinspector:
    # equal consecutive spike times), so keep one of them
    first = np.ones(len(samples), dtype=bool)
    by_unit = np.lexsort((samples, labels))
    repeated = (np.diff(samples[by_unit]) == 0) & (np.diff(labels[by_unit]) == 0)
    first[by_unit[1:][repeated]] = False
    sorting = NumpySorting.from_samples_and_labels(
        [samples[first]], [labels[first]], sampling_frequency, unit_ids=np.arange(num_units)
    )
    for key, value in tuning.items():
        if key == "state_loading":  # one column per latent, as SpikeInterface properties are per unit
            for j, column in enumerate(value.T):
                sorting.set_property(f"state_loading_{j}", column)
        else:
            sorting.set_property(key, value)

    t_fine = np.arange(num_rows) / FINE_RATE
    t_behavior = np.arange(0, duration, 1.0 / behavior_rate)
    signal = velocity if readout == "velocity" else position
    values = np.stack([np.interp(t_behavior, t_fine, signal[:num_rows, d]) for d in range(2)], axis=1)
    return sorting, Behavior(t_behavior, values, name=readout, unit="a.u.", dimension_names=["x", "y"])


def random_session_params(rng: np.random.Generator, duration: tuple[float, float] = (300.0, 600.0)) -> dict:
    """Keyword arguments of :func:`simulate_session` for one random session of a corpus.

    Sessions differ in length, unit count (30-200), firing rates (log-uniform, from
    0.2-2 Hz up to 15-60 Hz), tuning depth, the mix of velocity-, position- and untuned
    units, response latencies (0 up to 50-150 ms per unit), population gain noise,
    behaviour sampling rate (20-100 Hz), behaviour (half centre-out reaching, a fifth random
    velocity, the rest foraging with position read out), and whether spike times are only
    known to 50 ms (a quarter of sessions, as in binned recordings). This is the corpus of
    the shipped model ``poyo_small_sim_hc``: changing it changes that model's recipe.
    """
    behavior = str(rng.choice(BEHAVIORS, p=[0.2, 0.5, 0.3]))
    if behavior == "position":
        place = rng.uniform(0.5, 0.9)
        velocity = rng.uniform(0.0, 0.2)
        fractions = {"position": place, "velocity": velocity, "untuned": max(0.0, 1 - place - velocity)}
    else:
        position, untuned = rng.uniform(0.0, 0.3), rng.uniform(0.0, 0.3)
        fractions = {"velocity": 1 - position - untuned, "position": position, "untuned": untuned}
    return dict(
        duration=float(np.round(rng.uniform(*duration))),
        num_units=int(rng.integers(30, 201)),
        behavior_rate=float(rng.choice([20.0, 25.0, 30.0, 50.0, 60.0, 100.0])),
        lag=(0.0, float(np.round(rng.uniform(0.05, 0.15), 3))),
        behavior=behavior,
        tuning_fractions={k: float(np.round(v, 3)) for k, v in fractions.items()},
        firing_rates=(float(np.round(rng.uniform(0.2, 2.0), 2)), float(np.round(rng.uniform(15.0, 60.0), 1))),
        log_rates=True,
        gains=(0.2, float(np.round(rng.uniform(0.6, 1.2), 2))),
        gain_noise=float(np.round(rng.uniform(0.0, 0.4), 2)),
        spike_time_precision=0.05 if rng.random() < 0.25 else None,
        seed=int(rng.integers(2**31)),
    )


def simulate_corpus(num_sessions: int, seed: int = 0, duration: tuple[float, float] = (300.0, 600.0)) -> list[dict]:
    """Simulate a heterogeneous corpus of sessions (see :func:`random_session_params`).

    Parameters
    ----------
    num_sessions : int
        Number of sessions.
    seed : int, default: 0
        Seed of the corpus: the same seed gives the same sessions.
    duration : (float, float), default: (300, 600)
        Range of the session lengths in seconds.

    Returns
    -------
    list of dict
        One per session, with ``sorting``, ``behavior``, ``session_id``
        (``"sim{seed}_{i}"``) and the ``params`` it was simulated with; the list can be
        passed to :func:`~spikeinterface_poyo.pretrain` as is.
    """
    rng = np.random.default_rng(seed)
    corpus = []
    for i in range(num_sessions):
        params = random_session_params(rng, duration)
        sorting, behavior = simulate_session(**params)
        corpus.append({"sorting": sorting, "behavior": behavior, "session_id": f"sim{seed}_{i}", "params": params})
    return corpus
