"""Reading NWB files: behavioural series, epochs, units as a SpikeInterface sorting, whole
sessions (also lazily, for pretraining corpora), and decoded series written by the package."""

from __future__ import annotations

import gc
import json
import logging
from pathlib import Path

import h5py
import numpy as np
import pynwb

from ..core.behavior import Behavior
from ..core.sessions import SessionSource
from . import nwb_spec  # noqa: F401  (loads the ndx-poyo namespace, for reading decoded series)

logger = logging.getLogger(__name__)


def _decode(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _unit_ids_h5(units: h5py.Group) -> list[str]:
    """The ids SpikeInterface gives the units: the ``unit_name`` column when present, else ``id``."""
    column = units["unit_name"] if "unit_name" in units else units["id"]
    return [_decode(v) for v in column[:]]


def _timestamps(series) -> np.ndarray:
    if series.timestamps is not None:
        return np.asarray(series.timestamps[:], dtype=np.float64)
    n = series.data.shape[0]
    return (series.starting_time or 0.0) + np.arange(n) / float(series.rate)


def _iter_series(nwbfile):
    """Yield (path, series) for every TimeSeries in processing modules and acquisition."""

    def walk(container, path):
        if isinstance(container, pynwb.TimeSeries):
            yield path, container
            return
        for attr in ("time_series", "spatial_series"):
            children = getattr(container, attr, None)
            if isinstance(children, dict):
                for name, child in children.items():
                    yield from walk(child, f"{path}/{name}")

    for module_name, module in nwbfile.processing.items():
        for name, obj in module.data_interfaces.items():
            yield from walk(obj, f"processing/{module_name}/{name}")
    for name, obj in nwbfile.acquisition.items():
        yield from walk(obj, f"acquisition/{name}")


def behavior_from_timeseries(series) -> Behavior:
    """Convert a pynwb ``TimeSeries`` (with ``timestamps`` or ``rate``) into a :class:`Behavior`."""
    values = np.asarray(series.data[:], dtype=np.float64)
    if series.timestamps is not None:
        timestamps = np.asarray(series.timestamps[:], dtype=np.float64)
    elif series.rate is not None:
        start = series.starting_time or 0.0
        timestamps = start + np.arange(values.shape[0]) / float(series.rate)
    else:
        raise ValueError(f"TimeSeries {series.name!r} has neither timestamps nor a rate.")
    if values.ndim > 2:
        raise ValueError(f"TimeSeries {series.name!r} has {values.ndim}-D data; only (T,) or (T, D) is supported.")
    return Behavior(timestamps, values, name=series.name, unit=str(series.unit))


def list_nwb_behaviors(path: str | Path) -> dict[str, str]:
    """Map every TimeSeries name in the file's processing modules and acquisition to its path."""
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        return {series.name: p for p, series in _iter_series(io.read())}


def read_nwb_behavior(path: str | Path, name: str) -> Behavior:
    """Read one behavioural series from an NWB file.

    The series is looked up by name (or by its path, such as
    ``"processing/behavior/Position/hand_position"``) in every processing module,
    inside containers such as ``Position`` or ``BehavioralTimeSeries``, and in
    acquisition.

    Parameters
    ----------
    path : str or Path
        The NWB file.
    name : str
        Name or path of the TimeSeries / SpatialSeries.

    Returns
    -------
    Behavior
        Timestamps, (T, D) values, name and unit of the series.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No NWB file at {path}.")
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        found = dict(_iter_series(io.read()))
        matches = [p for p, s in found.items() if p == name or s.name == name]
        if not matches:
            names = sorted({s.name for s in found.values()})
            raise ValueError(f"No behavioural series named {name!r} in {path.name}; it holds {names}.")
        if len(matches) > 1:
            raise ValueError(
                f"{len(matches)} series are named {name!r} in {path.name}: {matches}; pass a path instead."
            )
        return behavior_from_timeseries(found[matches[0]])


def read_nwb_epochs(path: str | Path, tag: str) -> np.ndarray:
    """(K, 2) start and stop times of the epochs carrying ``tag`` in an NWB file's epochs table.

    For example ``read_nwb_epochs(path, "run")`` gives the running epochs of a hippocampus
    session, to restrict a position to them with :meth:`Behavior.restrict`.
    """
    path = Path(path)
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        epochs = io.read().epochs
        if epochs is None:
            raise ValueError(f"{path.name} has no epochs table to find {tag!r} epochs in.")
        table = epochs.to_dataframe()
    tagged = table[table["tags"].apply(lambda tags: tag in list(tags))]
    return tagged[["start_time", "stop_time"]].to_numpy(dtype=np.float64)


def nwb_session(
    path: str | Path,
    behavior: str,
    session_id: str | None = None,
    time_range: tuple[float, float] | None = None,
    intervals=None,
    epochs: str | None = None,
) -> SessionSource:
    """A lazily read NWB session: its units table and one behavioural series.

    Parameters
    ----------
    path : str or Path
        The NWB file.
    behavior : str
        Name or path of the behavioural series (see :func:`list_nwb_behaviors`).
    session_id : str or None
        Defaults to the file name without its suffix.
    time_range : (float, float) or None
        Keep only the behaviour in ``[start, stop)`` seconds.
    intervals : array-like or None
        (K, 2) epochs to keep, in seconds.
    epochs : str or None
        Keep only the epochs of the file's epochs table tagged so (for example ``"run"``).
    """
    path = Path(path)

    def load():
        sorting, target = load_nwb_session(path, behavior)
        if time_range is not None:
            target = target.time_slice(*time_range)
        if intervals is not None:
            target = target.restrict(np.asarray(intervals, dtype=np.float64))
        if epochs is not None:
            target = target.restrict(read_nwb_epochs(path, epochs))
        return sorting, target

    return SessionSource(session_id or path.stem, load)


# ---------------------------------------------------------------------------------------------
# reading


def _find_decoded(nwbfile, name: str | None, path: Path):
    found = {
        obj.name: obj
        for module in nwbfile.processing.values()
        for obj in module.data_interfaces.values()
        if obj.neurodata_type == "DecodedBehavior"
    }
    if name is None:
        if len(found) != 1:
            raise ValueError(f"{path.name} holds {len(found)} decoded series {sorted(found)}; pass name=.")
        return next(iter(found.values()))
    if name not in found:
        raise ValueError(f"No decoded series named {name!r} in {path.name}; it holds {sorted(found)}.")
    return found[name]


def _as_list(value) -> list[str] | None:
    return None if value is None else [_decode(v) for v in np.atleast_1d(value)]


def _metadata(series) -> dict:
    units = series.units
    unit_ids = None
    if units is not None:
        rows = np.asarray(units.data[:], dtype=np.int64)
        table = units.table
        column = table["unit_name"].data if "unit_name" in table.colnames else table.id.data
        ids = np.asarray(column[:])
        unit_ids = [_decode(ids[r]) for r in rows]
    return {
        "model_name": series.model_name,
        "model_version": series.model_version,
        "model_sha256": series.model_sha256,
        "preset": series.preset,
        "training_sessions": _as_list(series.training_sessions),
        "decoded_variable": series.decoded_variable,
        "metrics": json.loads(series.metrics) if series.metrics else None,
        "unit_ids": unit_ids,
        "description": series.description,
    }


def read_predictions_from_nwb(nwb_path: str | Path, name: str | None = None, return_metadata: bool = False):
    """Read a decoded series written by :func:`write_predictions_to_nwb`.

    Parameters
    ----------
    nwb_path : str or Path
        The NWB file.
    name : str or None
        Name of the ``DecodedBehavior``; may be omitted when the file holds exactly one.
    return_metadata : bool, default: False
        Also return the provenance.

    Returns
    -------
    Behavior
        The decoded series (timestamps rebuilt from ``starting_time`` and ``rate`` when stored so).
    dict
        Only with ``return_metadata``: ``model_name``, ``model_version``, ``model_sha256``,
        ``preset``, ``training_sessions``, ``decoded_variable``, ``metrics`` (dict), ``unit_ids``
        (the linked units' ids) and ``description``; unknown ones are None.
    """
    path = Path(nwb_path)
    if not path.is_file():
        raise FileNotFoundError(f"No NWB file at {path}.")
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        series = _find_decoded(io.read(), name, path)
        behavior = Behavior(
            _timestamps(series),
            np.asarray(series.data[:], dtype=np.float64),
            name=series.name,
            unit=str(series.unit),
            dimension_names=_as_list(series.dimension_names),
        )
        if return_metadata:
            return behavior, _metadata(series)
    return behavior


# ---------------------------------------------------------------------------------------------
# loading a session


def _time_base(path: Path, sampling_frequency: float | None, t_start: float | None) -> tuple:
    """Fill in what read_nwb_sorting cannot infer from files without ``units.resolution``.

    Decoding uses spike times in seconds, which the sorting keeps whatever the frame grid, so
    ``t_start`` may be 0 next to an ElectricalSeries and any fine rate will do as the grid.
    """
    rates: list[float] = []

    def visit(_name, obj):
        if isinstance(obj, h5py.Group) and _decode(obj.attrs.get("neurodata_type", "")) == "ElectricalSeries":
            rates.append(float(obj["starting_time"].attrs["rate"]) if "starting_time" in obj else np.nan)

    with h5py.File(path, "r") as f:
        if "units" not in f:
            raise ValueError(f"{path.name} has no units table; spike-sort the recording and add the units first.")
        spike_times = f["units"].get("spike_times")  # Units.resolution is stored on this dataset
        resolution = float(spike_times.attrs.get("resolution", -1.0)) if spike_times is not None else -1.0
        f.visititems(visit)
    if t_start is None and rates:
        t_start = 0.0
    if sampling_frequency is None and not resolution > 0:
        known = [r for r in rates if np.isfinite(r)]
        sampling_frequency = known[0] if known else 30000.0
        logger.info("units.resolution is not set; spike times are placed on a %g Hz grid.", sampling_frequency)
    return sampling_frequency, t_start


def load_nwb_session(
    path: str | Path,
    behavior: str | None = None,
    *,
    sampling_frequency: float | None = None,
    t_start: float | None = None,
):
    """Read the sorting and one behavioural series of an NWB file in one call.

    The sorting is read with ``spikeinterface.extractors.read_nwb_sorting`` and copied into
    memory, so the file is closed again on return and predictions can be written into it.

    Parameters
    ----------
    path : str or Path
        The NWB file: a ``units`` table (as written by ``nwbfile.add_unit``, neuroconv or
        SpikeInterface) and behaviour anywhere :func:`read_nwb_behavior` looks.
    behavior : str
        Name or path of the behavioural series, for example ``"hand_velocity"``.
    sampling_frequency : float or None
        Frame rate of the sorting; by default ``1 / units.resolution``, else the rate of an
        ElectricalSeries in the file, else 30 kHz.
    t_start : float or None
        Passed to ``read_nwb_sorting``; 0 when the file has an ElectricalSeries.

    Returns
    -------
    sorting : NumpySorting
        The units, with their table columns as properties.
    behavior : Behavior
        The behavioural series.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No NWB file at {path}.")
    if behavior is None:
        raise ValueError(f"Pass behavior= with one of the series in {path.name}: {sorted(list_nwb_behaviors(path))}.")
    target = read_nwb_behavior(path, behavior)
    return _read_sorting(path, sampling_frequency, t_start), target


def _read_sorting(path: Path, sampling_frequency: float | None = None, t_start: float | None = None):
    """``read_nwb_sorting`` copied into a NumpySorting, with the file closed again."""
    from spikeinterface.core import NumpySorting
    from spikeinterface.extractors import read_nwb_sorting

    sampling_frequency, t_start = _time_base(path, sampling_frequency, t_start)
    extractor = read_nwb_sorting(str(path), sampling_frequency=sampling_frequency, t_start=t_start)
    sorting = NumpySorting.from_sorting(extractor, with_metadata=True, copy_spike_vector=True)
    del extractor
    gc.collect()  # the extractor closes its HDF5 handle when collected, and holds a lock until then
    return sorting
