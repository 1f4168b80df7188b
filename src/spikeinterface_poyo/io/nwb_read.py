"""Reading NWB files: behavioural series, epochs, units as a SpikeInterface sorting, whole
sessions (also lazily, for pretraining corpora), and the decoded series and inferred firing rates
written by the package, from the file itself or from its companion file (``<stem>.poyo.nwb``)."""

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
from .nwb_spec import COMPANION_SUFFIX  # importing it loads the ndx-poyo namespace, for our series

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
    behavior: str | None,
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
    behavior : str or None
        Name or path of the behavioural series (see :func:`list_nwb_behaviors`); None reads the
        units only (a session for the masked objective of ``pretrain``).
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
    if behavior is None and (time_range is not None or intervals is not None or epochs is not None):
        raise ValueError(
            f"{path.name}: time_range, intervals and epochs select behaviour, and this session reads none; "
            "drop them, or name the behaviour to read."
        )

    def load():
        if behavior is None:
            return read_nwb_units(path), None
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


def default_companion_path(nwb_path: str | Path) -> Path:
    """Where :func:`write_predictions_to_nwb` puts a file's companion by default.

    ``<stem>.poyo.nwb`` beside the file as named (beside a symbolic link, not its target), so
    ``session.nwb`` gets ``session.poyo.nwb``.
    """
    path = Path(nwb_path).absolute()
    return path.with_name(path.stem + COMPANION_SUFFIX)


def _names_of_type(path: Path, neurodata_type: str) -> list[str]:
    """Names of the objects of that type in a file's processing modules, read with h5py (cheap on big files)."""
    with h5py.File(path, "r") as f:
        modules = [m for m in f.get("processing", {}).values() if isinstance(m, h5py.Group)]
        return [
            name
            for module in modules
            for name, obj in module.items()
            if _decode(obj.attrs.get("neurodata_type", "")) == neurodata_type
        ]


def _decoded_names(path: Path) -> list[str]:
    return _names_of_type(path, "DecodedBehavior")


def _find_series(
    nwb_path: Path, companion_path, name: str | None, neurodata_type: str = "DecodedBehavior", what="decoded series"
) -> tuple[Path, str]:
    """The file holding the series of that type (``nwb_path`` or its companion) and the series' name."""
    if companion_path is not None:
        companion = Path(companion_path)
        if not companion.is_file():
            raise FileNotFoundError(f"No companion file at {companion}.")
    else:
        companion = default_companion_path(nwb_path)
    places, note = [nwb_path], ""
    if nwb_path.name.endswith(COMPANION_SUFFIX) and companion_path is None:  # a companion itself
        looked = nwb_path.name
    elif companion.is_file() and companion.resolve() != nwb_path.resolve():
        places.append(companion)
        looked = f"{nwb_path.name} and its companion {companion.name}"
    else:
        looked, note = nwb_path.name, f" (and there is no companion file at {companion})"
    found = {path: _names_of_type(path, neurodata_type) for path in places}
    everything = sorted(n for names in found.values() for n in names)
    hold = "hold" if len(places) > 1 else "holds"
    if name is None:
        if len(everything) != 1:
            more = "; pass name=" if everything else ""
            raise ValueError(f"{looked} {hold} {len(everything)} {what} {everything}{note}{more}.")
        name = everything[0]
    holders = [path for path, names in found.items() if name in names]
    if not holders:
        they = "they" if len(places) > 1 else "it"
        raise ValueError(f"No {what} named {name!r} in {looked}{note}; {they} {hold} {everything}.")
    if len(holders) > 1:
        raise ValueError(
            f"Both {nwb_path.name} and its companion {companion.name} hold {what} named {name!r}; remove one of them."
        )
    return holders[0], name


def _read_series(nwb_path, name, companion_path, neurodata_type: str, what: str, convert):
    """``convert(series, path)`` of the named series of that type, found in the file or its companion."""
    path = Path(nwb_path)
    if not path.is_file():
        raise FileNotFoundError(f"No NWB file at {path}.")
    path, name = _find_series(path, companion_path, name, neurodata_type, what)
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        series = next(
            module[name]
            for module in nwbfile.processing.values()
            if name in module.data_interfaces and module[name].neurodata_type == neurodata_type
        )
        return convert(series, path)


def _as_list(value) -> list[str] | None:
    return None if value is None else [_decode(v) for v in np.atleast_1d(value)]


def _region_unit_ids(series) -> list[str] | None:
    """Ids of the units the ``units`` region points at, in its order, or None without one."""
    units = series.units
    if units is None:
        return None
    # the units table, or in a companion its local copy of the source's unit ids
    rows = np.asarray(units.data[:], dtype=np.int64)
    table = units.table
    column = table["unit_name"].data if "unit_name" in table.colnames else table.id.data
    ids = np.asarray(column[:])
    return [_decode(ids[r]) for r in rows]


def _provenance(series, path: Path) -> dict:
    """The metadata every series type here carries."""
    return {
        "model_name": series.model_name,
        "model_version": series.model_version,
        "model_sha256": series.model_sha256,
        "preset": series.preset,
        "training_sessions": _as_list(series.training_sessions),
        "metrics": json.loads(series.metrics) if series.metrics else None,
        "unit_ids": _region_unit_ids(series),
        "description": series.description,
        "nwb_path": path,
    }


def _metadata(series, path: Path) -> dict:
    return {**_provenance(series, path), "decoded_variable": series.decoded_variable}


def read_predictions_from_nwb(
    nwb_path: str | Path,
    name: str | None = None,
    return_metadata: bool = False,
    companion_path: str | Path | None = None,
):
    """Read a decoded series written by :func:`write_predictions_to_nwb`, from a file or its companion.

    Parameters
    ----------
    nwb_path : str or Path
        The NWB file (or a companion file). Its companion, ``<stem>.poyo.nwb`` beside it, is
        searched as well when it exists.
    name : str or None
        Name of the ``DecodedBehavior``; may be omitted when the file and its companion hold
        exactly one.
    return_metadata : bool, default: False
        Also return the provenance.
    companion_path : str or Path or None
        The companion file, when it is not at its default place.

    Returns
    -------
    Behavior
        The decoded series (timestamps rebuilt from ``starting_time`` and ``rate`` when stored so).
    dict
        Only with ``return_metadata``: ``model_name``, ``model_version``, ``model_sha256``,
        ``preset``, ``training_sessions``, ``decoded_variable``, ``metrics`` (dict), ``unit_ids``
        (the ids of the units that fed the decoder), ``description``, and ``nwb_path`` (the file
        it was read from); unknown ones are None.
    """

    def convert(series, path):
        behavior = Behavior(
            _timestamps(series),
            np.asarray(series.data[:], dtype=np.float64),
            name=series.name,
            unit=str(series.unit),
            dimension_names=_as_list(series.dimension_names),
        )
        return (behavior, _metadata(series, path)) if return_metadata else behavior

    return _read_series(nwb_path, name, companion_path, "DecodedBehavior", "decoded series", convert)


def read_rates_from_nwb(
    nwb_path: str | Path,
    name: str | None = "inferred_rates",
    companion_path: str | Path | None = None,
    return_metadata: bool = False,
):
    """Read firing rates written by :func:`write_rates_to_nwb`, from a file or its companion.

    Parameters
    ----------
    nwb_path : str or Path
        The NWB file (or a companion file). Its companion, ``<stem>.poyo.nwb`` beside it, is
        searched as well when it exists.
    name : str or None, default: "inferred_rates"
        Name of the ``InferredRates``; None takes the only one the file and its companion hold.
    companion_path : str or Path or None
        The companion file, when it is not at its default place.
    return_metadata : bool, default: False
        Also return the provenance.

    Returns
    -------
    Behavior
        (T, N) rates in Hz at the bin centres, one column per unit; ``dimension_names`` are the
        unit ids (``unit_name`` column, else ``id``) of the rows the ``units`` region points at,
        in column order.
    dict
        Only with ``return_metadata``: ``model_name``, ``model_version``, ``model_sha256``,
        ``preset``, ``training_sessions``, ``metrics`` (dict), ``unit_ids``, ``bin_size``,
        ``masking``, ``description``, and ``nwb_path`` (the file it was read from); unknown ones
        are None.
    """

    def convert(series, path):
        meta = {**_provenance(series, path), "bin_size": series.bin_size, "masking": series.masking}
        if meta["bin_size"] is not None:
            meta["bin_size"] = float(meta["bin_size"])
        rates = Behavior(
            _timestamps(series),
            np.asarray(series.data[:], dtype=np.float64),
            name=series.name,
            unit=str(series.unit),
            dimension_names=meta["unit_ids"],
        )
        return (rates, meta) if return_metadata else rates

    return _read_series(nwb_path, name, companion_path, "InferredRates", "series of inferred rates", convert)


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


def read_nwb_units(path: str | Path, *, sampling_frequency: float | None = None, t_start: float | None = None):
    """The sorting of an NWB file's units table, in memory (no behaviour needed: for
    self-supervised models); see :func:`load_nwb_session` for the arguments."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No NWB file at {path}.")
    return _read_sorting(path, sampling_frequency, t_start)


def read_nwb_trials(path: str | Path):
    """The NWB file's ``trials`` table as a pandas DataFrame; a clear error when it has none."""
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        trials = io.read().trials
        if trials is None:
            raise ValueError(f"{Path(path).name} has no trials table; drop trials = true to use contiguous windows.")
        return trials.to_dataframe()
