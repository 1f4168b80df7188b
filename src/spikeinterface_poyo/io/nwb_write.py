"""Write decoded behaviour and inferred firing rates into NWB files, with the model's provenance,
without ever corrupting them.

Decoded series are stored as ``DecodedBehavior`` objects in the ``behavior`` processing module,
inferred rates as ``InferredRates`` objects (one column per unit, linked to the units table) in
the ``ecephys`` module; both are TimeSeries subtypes defined by the ``ndx-poyo`` extension
(``nwb_spec/``) and go through the same write. The extension is loaded when this module is
imported and its spec is cached in every file written, so a reader without this package can
still open the data with plain pynwb.

Two ways to store them (``storage=``):

- ``"copy"``: into the file itself. The write goes into a temporary copy next to the file, the
  copy is re-opened and checked, and only then replaces the original with :func:`os.replace`
  (atomic on one file system). On any failure the original is left byte-identical.
- ``"companion"``: into a small companion NWB file (``<stem>.poyo.nwb`` beside it) whose
  ``/units`` is an HDF5 external link to the source's units, the usual raw/processed split for
  files holding raw ephys, which are too big to copy for every write. The source is only ever
  opened read-only; the companion itself goes through the same temporary copy and replace.

``"auto"`` (the default) chooses the companion above :data:`COMPANION_THRESHOLD` bytes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from uuid import uuid4

import h5py
import numpy as np
import pynwb
from hdmf.common import DynamicTableRegion

from .._version import __version__
from ..core.behavior import Behavior
from .atomic import new_file_mode, replace_file
from .models import CONFIG_FILE, model_sha256
from .nwb_read import _decode, _timestamps, _unit_ids_h5, default_companion_path
from .nwb_spec import MODULE_NAME, NAMESPACE, RATES_MODULE, SOURCE_UNITS_TABLE, DecodedBehavior, InferredRates

logger = logging.getLogger(__name__)

# the extra room a write needs besides the copy itself and the new data: HDF5 metadata
_SPACE_MARGIN = 16 * 2**20
#: ``storage="auto"`` writes into a companion file for sources larger than this (bytes): below it
#: a full copy per write is cheap, above it (raw ephys) too slow and needs as much free space again.
COMPANION_THRESHOLD = 2 * 2**30
STORAGES = ("auto", "copy", "companion")


class NWBFileInUseError(OSError):
    """The NWB file is open elsewhere (h5py, pynwb, a SpikeInterface extractor) and cannot be replaced."""


class NWBWriteError(RuntimeError):
    """The written copy did not re-open or check out; the original file was left unchanged."""


@dataclass(frozen=True)
class _Kind:
    """What a write stores: its neurodata type, the processing module it goes into, and its name in messages."""

    neurodata_type: str
    module: str
    module_description: str
    what: str


_DECODED = _Kind("DecodedBehavior", MODULE_NAME, "Processed behavioural data.", "decoded series")
_RATES = _Kind("InferredRates", RATES_MODULE, "Processed extracellular electrophysiology data.", "inferred rates")


# ---------------------------------------------------------------------------------------------
# provenance


def model_provenance(model=None, model_path: str | Path | None = None) -> dict:
    """Provenance attributes of a ``DecodedBehavior`` (or ``InferredRates``) from a model and/or its saved folder.

    Parameters
    ----------
    model : POYO or None
        A trained model; its ``meta`` gives the preset, training sessions and version.
    model_path : str or Path or None
        A folder written by :func:`save_model`; gives the sha256 of the weights (and the
        ``meta`` when ``model`` is None).

    Returns
    -------
    dict
        ``model_name``, ``model_version``, ``preset``, ``training_sessions``, ``decoded_variable``,
        ``dimension_names``, ``context`` (``"centred"`` or ``"causal"``, POYO's) and ``model_sha256``
        (the last only with ``model_path``); unknown fields are left out.
    """
    if model is None and model_path is None:
        raise ValueError("Pass model= or model_path= so the written series records which model produced it.")
    meta, saved_version, saved_class = {}, None, None
    if model_path is not None:
        model_path = Path(model_path)
        config_path = model_path / CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(f"No saved model at {model_path}: {CONFIG_FILE} is missing.")
        config = json.loads(config_path.read_text())
        meta, saved_version = config.get("meta", {}), config.get("package_version")
        saved_class = config.get("model_class", "POYO")  # schema-1 folders hold POYO models
    if model is not None:
        meta = getattr(model, "meta", None) or meta
    training = meta.get("training", {})
    behavior = meta.get("behavior", {})
    provenance = {
        "model_name": type(model).__name__ if model is not None else saved_class,
        "model_version": str(training.get("package_version") or saved_version or __version__),
        "preset": training.get("preset"),
        "training_sessions": [str(s) for s in training.get("sessions", [])] or None,
        "decoded_variable": behavior.get("name"),
        "dimension_names": behavior.get("dimension_names"),
        "context": training.get("context"),  # POYO's window placement: said in the description
    }
    if model_path is not None:
        provenance["model_sha256"] = model_sha256(model_path)
    return {k: v for k, v in provenance.items() if v not in (None, "", [])}


def _metrics_json(metrics) -> str | None:
    """Metrics as a JSON object; numpy scalars and arrays become plain numbers and lists."""
    if metrics is None:
        return None
    if not isinstance(metrics, dict):
        raise TypeError(f"metrics must be a dict (such as sip.r2_score's result), got {type(metrics).__name__}.")

    def plain(x):
        if isinstance(x, np.ndarray):
            return x.tolist()
        if isinstance(x, np.generic):
            return x.item()
        raise TypeError(f"metrics value {x!r} cannot be stored as JSON.")

    return json.dumps(metrics, default=plain)


# ---------------------------------------------------------------------------------------------
# where the predictions go


@dataclass
class _Plan:
    """Which files a write involves.

    ``source`` holds the units that fed the decoder; ``target`` is the file that ends up holding
    the predictions (the source itself, an ``output_path``, or a companion); ``link`` is the name
    the companion's ``/units`` external link gives the source, relative to the companion's folder
    (None when writing a full copy); ``pair`` is the other file of a source/companion pair, which
    must not hold a series of the same name (readers look in both).
    """

    source: Path
    target: Path
    link: str | None = None
    pair: Path | None = None

    @property
    def companion(self) -> bool:
        return self.link is not None


@contextlib.contextmanager
def _reading(path: Path):
    """``h5py.File(path, "r")``, with clear errors for a file being written elsewhere or not HDF5."""
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        if "lock" in str(err) or "already open" in str(err):
            raise NWBFileInUseError(_in_use_message(path, exclusive=False)) from None
        raise OSError(f"{path} cannot be read as an HDF5 NWB file: {err}") from None
    with f:
        yield f


def _units_link(path: Path):
    """The link at ``/units`` (an ``h5py.ExternalLink`` in a companion file), or None without units."""
    with _reading(path) as f:
        return f.get("units", getlink=True)


def _plan(nwb_path, storage: str, companion_path, output_path, threshold: int | None) -> _Plan:
    """Choose copy or companion and the files involved (see :func:`write_predictions_to_nwb`)."""
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}.")
    given = Path(nwb_path).absolute()
    source = given.resolve()  # a symlink's target is what gets updated, not the link
    if not source.is_file():
        raise FileNotFoundError(f"No NWB file at {given}.")
    if output_path is not None:
        if storage == "companion" or companion_path is not None:
            raise ValueError("output_path= writes a full copy of the file; it does not go with a companion file.")
        return _Plan(source, Path(output_path).absolute())
    link = _units_link(source)
    if isinstance(link, h5py.ExternalLink):  # nwb_path is a companion itself: write into it
        if storage == "copy" or (companion_path is not None and Path(companion_path).absolute() != given):
            raise ValueError(
                f"{given.name} is a companion file (its units link to {link.filename}); write into it with "
                "storage='auto' or 'companion', or pass its source file."
            )
        linked = (source.parent / link.filename).resolve()
        return _Plan(linked, source, link=link.filename, pair=linked)
    companion = Path(companion_path).absolute() if companion_path is not None else default_companion_path(given)
    if storage == "copy" and companion_path is not None:
        raise ValueError("companion_path= goes with storage='companion' or 'auto', not 'copy'.")
    if storage == "auto":
        threshold = COMPANION_THRESHOLD if threshold is None else threshold
        # an existing companion keeps getting the session's predictions: readers find them together
        use_companion = companion_path is not None or companion.exists() or source.stat().st_size > threshold
    else:
        use_companion = storage == "companion"
    if not use_companion:
        return _Plan(source, source, pair=companion if companion.exists() else None)
    if companion.resolve() == source:
        raise ValueError(f"The companion file cannot be the source file {given.name} itself.")
    companion = companion.resolve()
    # relative, so that the pair still links when moved together
    return _Plan(source, companion, link=os.path.relpath(given, companion.parent), pair=source)


# ---------------------------------------------------------------------------------------------
# checks on the target before anything is written


def _is_writable(path: Path) -> bool:
    """Write permission, by the mode bits as well as access(): root passes access() on read-only files."""
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _check_target(plan: _Plan, base: Path | None, new_bytes: int) -> None:
    """Clear errors for an existing output, a read-only target or folder, and a lack of disk space.

    ``base`` is what the new target starts as a copy of: the source, the existing companion, or
    None for a new companion.
    """
    target = plan.target
    if target.exists():
        if target != base:
            raise FileExistsError(f"{target} exists already; choose another output path or write into it in place.")
        if not _is_writable(target):
            ways = (
                "choose another companion_path="
                if plan.companion
                else "write into a copy (output_path=..., or --output on the command line) or into a companion "
                "file beside it (storage='companion')"
            )
            raise PermissionError(
                f"{target} is read-only; nothing was written. Make it writable (chmod u+w) or {ways}."
            )
    folder = target.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"The folder {folder} does not exist.")
    if not _is_writable(folder):
        raise PermissionError(
            f"The folder {folder} is read-only; nothing was written. The file is replaced atomically through a "
            "temporary copy next to it, so its folder must be writable"
            + ("." if plan.companion else "; or write a companion file elsewhere (companion_path=...).")
        )
    needed = (base.stat().st_size if base is not None else 0) + new_bytes + _SPACE_MARGIN
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise OSError(
            errno.ENOSPC,
            f"Not enough disk space in {folder}: the write needs about {needed / 2**20:.0f} MiB "
            f"(a temporary copy of the file) and {free / 2**20:.0f} MiB are free; nothing was written.",
        )


def _in_use_message(path: Path, exclusive: bool = True) -> str:
    if not exclusive:  # only a writer's lock refuses a shared one
        return (
            f"{path} is open for writing elsewhere (an h5py.File or a pynwb NWBHDF5IO in append mode, in this or "
            "another process); nothing was written. Wait for that write to finish and close it first."
        )
    return (
        f"{path} is open elsewhere (an h5py.File, a pynwb NWBHDF5IO, or a sorting from read_nwb_sorting, in this "
        "or another process), so it cannot be safely replaced; nothing was written. Close it first "
        "(io.close(), f.close(), or `del sorting`), or write into a copy with output_path=."
    )


@contextlib.contextmanager
def _locked(path: Path, exclusive: bool):
    """Hold an flock on ``path`` (the lock HDF5 itself takes) or raise :class:`NWBFileInUseError`.

    HDF5 readers hold a shared lock and writers an exclusive one, on every open of the file in
    any process, so a refused non-blocking lock means the file is open somewhere.
    """
    try:
        import fcntl
    except ImportError:  # no flock (Windows): ask HDF5 itself, which refuses if the file is open
        _probe_with_hdf5(path, exclusive)
        yield
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NWBFileInUseError(_in_use_message(path, exclusive)) from None
        except OSError as err:  # file systems without locks: go on unlocked
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
        yield
    finally:
        os.close(fd)  # releases the lock


def _probe_with_hdf5(path: Path, exclusive: bool) -> None:
    try:
        h5py.File(path, "r+" if exclusive else "r").close()
    except OSError as err:
        if "lock" in str(err) or "already open" in str(err):
            raise NWBFileInUseError(_in_use_message(path, exclusive)) from None
        raise


@dataclass
class _FileSummary:
    """What the writer needs to know about a file, read once before it is locked."""

    paths: set[str] = field(default_factory=set)
    existing_type: str | None = None
    unit_ids: list[str] | None = None
    source_units: list[str] | None = None  # a companion's copy of its source's unit ids


def _summarize(path: Path, name: str | None = None, module: str = MODULE_NAME) -> _FileSummary:
    """Every object path, the type of ``processing/<module>/<name>`` if any, and the units' ids."""
    summary = _FileSummary()
    with _reading(path) as f:
        f.visit(summary.paths.add)  # hard links only: a companion's linked units are not its objects
        existing = f.get(f"processing/{module}/{name}") if name else None
        if existing is not None:
            summary.existing_type = _decode(existing.attrs.get("neurodata_type", "unknown"))
        units = f.get("units")  # None for a companion whose source is missing
        if units is not None:
            summary.unit_ids = _unit_ids_h5(units)
        table = f.get(f"processing/{MODULE_NAME}/{SOURCE_UNITS_TABLE}")
        if table is not None and "unit_name" in table:
            summary.source_units = [_decode(v) for v in table["unit_name"][:]]
    return summary


def _check_companion(plan: _Plan, summary: _FileSummary, source_ids: list[str] | None) -> None:
    """Refuse to write into a file at the companion path that is not this source's companion."""
    companion, source = plan.target, plan.source
    link = _units_link(companion)
    if isinstance(link, h5py.ExternalLink):
        linked = companion.parent / link.filename
        ours = linked.exists() and os.path.samefile(linked, source)
    else:
        ours = link is None and source_ids is None
    if not ours:
        raise ValueError(
            f"{companion} exists and is not the companion file of {source.name} (its units do not link to it); "
            "nothing was written. Pass another companion_path= or move that file away."
        )
    if summary.source_units is not None and summary.source_units != source_ids:
        raise ValueError(
            f"The units table of {source.name} changed since its companion {companion.name} was written "
            f"({len(summary.source_units)} units then, {len(source_ids or [])} now), so the units of the series "
            "in it no longer match; nothing was written. Write into a new companion file (companion_path=...)."
        )


def _model_unit_ids(model) -> list[str]:
    """Unit ids (without the session prefix) in the vocabulary of the model's training sessions."""
    if model is None or not hasattr(model, "unit_emb"):
        return []
    sessions = [str(s) for s in model.meta.get("training", {}).get("sessions", [])]
    ids = []
    for word in model.unit_emb.vocab[1:]:
        for session in sessions:
            if word.startswith(f"{session}/"):
                ids.append(word[len(session) + 1 :])
    return ids


def _unit_rows(file_ids: list[str] | None, unit_ids, model) -> list[int] | None:
    """Rows of the units table for ``unit_ids`` (or the model's units); None when there is nothing to link."""
    if unit_ids is None:
        wanted = _model_unit_ids(model)
        if not file_ids or not wanted:
            return None
        index = {u: i for i, u in enumerate(file_ids)}
        rows = [index[u] for u in wanted if u in index]
        if not rows:
            logger.warning("None of the model's units are in the file's units table; no units link is written.")
            return None
        return sorted(rows)
    if file_ids is None:
        raise ValueError("unit_ids were given but the file has no units table to link them to.")
    return sorted(_rows_of(file_ids, unit_ids))


def _rows_of(file_ids: list[str], unit_ids, hint: str = "") -> list[int]:
    """Rows of the units table holding ``unit_ids``, in their order; a ValueError naming any missing."""
    index = {u: i for i, u in enumerate(file_ids)}
    wanted = [str(u) for u in unit_ids]
    missing = [u for u in wanted if u not in index]
    if missing:
        shown = ", ".join(map(repr, missing[:10])) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise ValueError(
            f"{len(missing)} of the {len(wanted)} unit_ids are not in the file's units table: {shown}; it holds "
            f"{len(file_ids)} units such as {file_ids[:3]}, named as SpikeInterface reads them (the unit_name "
            f"column, else id). {hint or 'Pass unit_ids= with those ids.'} Nothing was written."
        )
    return [index[u] for u in wanted]


def _rate_rows(file_ids: list[str] | None, unit_ids: list[str], path) -> list[int]:
    """Rows of the units table of each column of the rates, in column order (never sorted)."""
    if file_ids is None:
        raise ValueError(
            f"{Path(path).name} has no units table; inferred rates link every column to its unit there, so "
            "write them into the file the units were read from. Nothing was written."
        )
    hint = (
        "unit_ids= default to the rates' dimension_names: name the columns with those ids, or pass "
        "unit_ids= with one of them per column, in column order."
    )
    return _rows_of(file_ids, unit_ids, hint)


# ---------------------------------------------------------------------------------------------
# building and appending the DecodedBehavior or InferredRates


def _time_kwargs(timestamps: np.ndarray) -> dict:
    """``starting_time`` + ``rate`` for regularly sampled series (NWB best practice), else ``timestamps``.

    "Regular" is nwbinspector's test: all sampling intervals equal to 9 decimals.
    """
    if len(timestamps) > 2:
        steps = np.unique(np.diff(timestamps).round(9))
        if len(steps) == 1 and steps[0] > 0:
            rate = (len(timestamps) - 1) / (timestamps[-1] - timestamps[0])
            return {"starting_time": float(timestamps[0]), "rate": float(rate)}
    return {"timestamps": timestamps}


def _build(
    predictions: Behavior,
    name: str,
    provenance: dict,
    metrics: str | None,
    rows: list[int] | None,
    units_table,
):
    """The DecodedBehavior object for ``predictions``."""
    variable = provenance.get("decoded_variable", predictions.name)
    description = (
        f"{variable} decoded from spiking activity by the {provenance['model_name']} model"
        + (f" (preset {provenance['preset']!r})" if "preset" in provenance else "")
        + (f" with {provenance['context']} windows" if "context" in provenance else "")
        + f", written by spikeinterface-poyo {__version__}."
        + (" Samples the decoder could not cover are NaN." if not predictions.valid.all() else "")
    )
    provenance = {k: v for k, v in provenance.items() if k not in ("dimension_names", "context")}
    region = "Rows of the units table that fed the decoder."
    return DecodedBehavior(
        name=name,
        unit=predictions.unit or "unknown",
        description=description,
        dimension_names=list(predictions.dimension_names),
        **_series_fields(predictions, provenance, metrics, rows, units_table, region),
    )


def _build_rates(
    rates: Behavior,
    name: str,
    provenance: dict,
    metrics: str | None,
    rows: list[int],
    units_table,
    bin_size: float | None,
    masking: str | None,
):
    """The InferredRates object for ``rates``."""
    description = (
        f"Firing rates (Hz) of {rates.num_dimensions} units inferred from spiking activity by the "
        f"{provenance['model_name']} model"
        + (f" (preset {provenance['preset']!r})" if "preset" in provenance else "")
        + (f" with {masking!r} masking" if masking else "")
        + (f", in {bin_size * 1000:g} ms bins at their centres" if bin_size is not None else "")
        + f", written by spikeinterface-poyo {__version__}. Column i is the unit in row units[i] of the units table."
        + (" Samples the model could not cover are NaN." if not rates.valid.all() else "")
    )
    extra = {k: v for k, v in (("bin_size", bin_size), ("masking", masking)) if v is not None}
    region = "Row of the units table of each column of data, in column order."
    return InferredRates(
        name=name,
        unit="Hz",
        description=description,
        **_series_fields(rates, provenance, metrics, rows, units_table, region),
        **extra,
    )


def _series_fields(series: Behavior, provenance: dict, metrics, rows, units_table, region: str) -> dict:
    """What every type here holds: compressed data, its times, the provenance, metrics and units region."""
    from hdmf.backends.hdf5 import H5DataIO

    fields = dict(provenance)
    if rows is not None:
        fields["units"] = DynamicTableRegion(name="units", data=rows, description=region, table=units_table)
    if metrics is not None:
        fields["metrics"] = metrics
    return {"data": H5DataIO(series.values, compression="gzip"), **_time_kwargs(series.timestamps), **fields}


def _remove_object(path: Path, name: str, module: str = MODULE_NAME) -> None:
    """Delete ``processing/<module>/<name>`` from the (temporary) copy before it is written again."""
    with h5py.File(path, "r+") as f:
        del f[f"processing/{module}/{name}"]


def _append(path: Path, kind: _Kind, build, companion: bool) -> None:
    """Add ``build(units_table)`` to ``processing/<kind.module>`` of the file at ``path`` (the temporary
    copy) in pynwb's append mode, creating the module if missing."""
    with pynwb.NWBHDF5IO(str(path), "a") as io:
        nwbfile = io.read()
        if kind.module not in nwbfile.processing:
            nwbfile.create_processing_module(kind.module, kind.module_description)
        if companion:  # its regions point into its local copy of the source's unit ids (see _new_companion)
            home = nwbfile.processing.get(MODULE_NAME)
            table = home.data_interfaces.get(SOURCE_UNITS_TABLE) if home is not None else None
        else:
            table = nwbfile.units
        nwbfile.processing[kind.module].add(build(table))
        io.write(nwbfile)


# ---------------------------------------------------------------------------------------------
# companion files


def _new_companion(path: Path, plan: _Plan, unit_ids: list[str] | None) -> None:
    """Write a new companion file at ``path``: the source's session metadata, no predictions yet.

    HDF5 object references cannot point into another file, so a ``units`` region (of a
    DecodedBehavior or InferredRates) cannot reference the linked ``/units``. It references
    ``behavior/source_units`` instead: the source's unit ids (its ``id`` column, and the
    SpikeInterface ids as ``unit_name``) in the same row order, so the region's rows are also rows
    of the linked table, and the ids stay readable, with plain pynwb and the same code as in a
    full copy, even where the source is not at hand.
    """
    from hdmf.common import DynamicTable
    from hdmf.utils import get_docval
    from pynwb.file import Subject

    with pynwb.NWBHDF5IO(str(plan.source), "r") as io:
        source = io.read()
        copied = {k: getattr(source, k) for k in ("experimenter", "experiment_description", "institution", "lab")}
        copied["session_id"] = source.session_id
        if source.subject is not None:  # core fields only: an extension's subject type is not cached here
            fields = {a["name"] for a in get_docval(Subject.__init__)}
            copied["subject"] = Subject(**{k: v for k, v in source.subject.fields.items() if k in fields})
        nwbfile = pynwb.NWBFile(
            session_description=(
                f"Companion file of {plan.source.name}, written by spikeinterface-poyo {__version__}: behaviour "
                f"decoded from the spikes of that session, in processing/{MODULE_NAME}, and firing rates inferred "
                f"from them, in processing/{RATES_MODULE}. Its /units is an HDF5 "
                f"external link to the units of {plan.link}; keep the two files together. "
                f"The session: {source.session_description}"
            ),
            identifier=str(uuid4()),
            session_start_time=source.session_start_time,
            timestamps_reference_time=source.timestamps_reference_time,
            **{k: v for k, v in copied.items() if v is not None},
        )
        module = nwbfile.create_processing_module(MODULE_NAME, f"Behaviour decoded from {plan.source.name}'s units.")
        if unit_ids is not None:
            table = DynamicTable(
                name=SOURCE_UNITS_TABLE,
                description=(
                    f"The ids of the units of {plan.source.name} (linked as /units), row for row. The units regions "
                    "of the decoded series here point into this table, since HDF5 references cannot reach into "
                    "another file; its rows are the rows of the linked units table."
                ),
                id=np.asarray(source.units.id.data[:]),
            )
            table.add_column("unit_name", "Unit ids as SpikeInterface reads them: unit_name, else id.", data=unit_ids)
            module.add(table)
        with pynwb.NWBHDF5IO(str(path), "w") as out:
            out.write(nwbfile)
    path.chmod(new_file_mode())  # mkstemp made it 0600


@contextlib.contextmanager
def _units_detached(path: Path, plan: _Plan, linked: bool):
    """Take a companion's ``/units`` link out while pynwb appends to it, and put it back after.

    HDF5 opens the file of an external link with the access flags of the file holding the link,
    so pynwb's append mode would open (and lock) the source for writing through it.
    """
    if not plan.companion:
        yield
        return
    with h5py.File(path, "r+") as f:
        if f.get("units", getlink=True) is not None:  # getlink: never traverse it
            del f["units"]  # the link only
    yield
    if linked:
        with h5py.File(path, "r+") as f:
            f["units"] = h5py.ExternalLink(plan.link, "/units")


def _verify_companion(path: Path, plan: _Plan, source_ids: list[str] | None) -> None:
    """Check the written companion's ``/units`` link: the relative name, and that it reaches the source's units."""
    link = _units_link(path)
    if source_ids is None:
        if link is not None:
            raise NWBWriteError(f"The companion has a /units but {plan.source.name} has none.")
        return
    if not isinstance(link, h5py.ExternalLink) or link.filename != plan.link:
        raise NWBWriteError(f"The companion's /units is not an external link to {plan.link}.")
    after = _summarize(path)
    if after.unit_ids != source_ids or after.source_units != source_ids:
        raise NWBWriteError(f"The companion's units do not resolve to the units of {plan.source.name}.")


def _verify(
    path: Path,
    predictions: Behavior,
    name: str,
    before: _FileSummary,
    replaced: bool,
    module: str = MODULE_NAME,
    rows: list[int] | None = None,
) -> None:
    """Re-open the written copy and check it: schema of the new object, its values and units, nothing lost."""
    with h5py.File(path, "r") as f:
        after: set[str] = set()
        f.visit(after.add)
    prefix = f"processing/{module}/{name}"
    lost = {p for p in before.paths - after if not (replaced and (p == prefix or p.startswith(prefix + "/")))}
    if lost:
        raise NWBWriteError(f"The written copy lacks {len(lost)} objects of the original (e.g. {sorted(lost)[0]}).")
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        series = io.read().processing[module][name]
        if not np.array_equal(np.asarray(series.data[:]), predictions.values, equal_nan=True):
            raise NWBWriteError(f"{name} reads back different values than were written.")
        if not np.allclose(_timestamps(series), predictions.timestamps, rtol=0, atol=1e-9):
            raise NWBWriteError(f"{name} reads back different timestamps than were written.")
        if rows is not None and (series.units is None or np.asarray(series.units.data[:]).tolist() != list(rows)):
            raise NWBWriteError(f"{name} reads back different units rows than were written.")
    errors = _schema_errors(path, name, module)
    if errors:
        raise NWBWriteError(f"{name} does not match the {NAMESPACE} schema: {'; '.join(map(str, errors[:3]))}")


def _schema_errors(path: Path, name: str, module: str = MODULE_NAME) -> list:
    """Validate the new object against the spec cached in the file, as a reader without this package sees it.

    Only our object is validated: problems the file had before are not ours to block on.
    """
    from hdmf.build import BuildManager
    from hdmf.validate import ValidatorMap

    type_map = _cached_type_map(path)
    with pynwb.NWBHDF5IO(str(path), "r", manager=BuildManager(type_map), load_namespaces=False) as io:
        builder = io.read_builder()["processing"][module][name]
        return ValidatorMap(type_map.namespace_catalog.get_namespace(NAMESPACE)).validate(builder)  # file still open


_TYPE_MAPS: dict[str, object] = {}


def _cached_type_map(path: Path):
    """The type map built from the file's cached specs, memoised by their content (building it takes ~1 s)."""
    from pynwb.validation import get_cached_namespaces_to_validate

    digest = hashlib.sha256()
    with h5py.File(path, "r") as f:
        f["specifications"].visititems(lambda key, obj: digest.update(key.encode() + _spec_bytes(obj)))
    key = digest.hexdigest()
    if key not in _TYPE_MAPS:
        _, manager, _ = get_cached_namespaces_to_validate(path=str(path))
        _TYPE_MAPS[key] = manager.type_map
    return _TYPE_MAPS[key]


def _spec_bytes(obj) -> bytes:
    if not isinstance(obj, h5py.Dataset):
        return b""
    value = obj[()]
    return value if isinstance(value, bytes) else str(value).encode()


def _copy(source: Path, target: Path) -> None:
    """Copy the bytes and the permission bits (the replaced file keeps its mode)."""
    try:
        shutil.copyfile(source, target)
        shutil.copymode(source, target)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            message = f"The disk filled up while copying {source.name}; nothing was written."
            raise OSError(errno.ENOSPC, message) from None
        raise


def _is_disk_full(err: BaseException) -> bool:
    return getattr(err, "errno", None) == errno.ENOSPC or "No space left on device" in str(err)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        now = path.stat()
    except FileNotFoundError:
        return None
    return now.st_size, now.st_mtime_ns


def _stage(target: Path, fill, watched: list[Path]) -> None:
    """Write ``target``'s new content into a temporary file beside it, then move that into place.

    ``fill(tmp)`` writes and checks the content; the ``watched`` files must keep their size and
    mtime (or stay absent) meanwhile, or another writer got in. On any error, Ctrl-C included,
    the temporary file is removed and ``target`` is left as it was, or absent.
    """
    stamps = {path: _stamp(path) for path in watched}
    existed = target.exists()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        fill(tmp)
        changed = [path for path in watched if _stamp(path) != stamps[path]]
        if changed:
            raise NWBWriteError(f"{changed[0]} was modified by someone else during the write; nothing was written.")
        replace_file(tmp, target)
    except Exception as err:
        tmp.unlink(missing_ok=True)
        if _is_disk_full(err) and not isinstance(err, NWBWriteError):
            state = "it is unchanged" if existed else "nothing was written"
            raise OSError(errno.ENOSPC, f"The disk filled up while writing {target.name}; {state}.") from err
        raise
    except BaseException:  # KeyboardInterrupt: still never leave the copy behind
        tmp.unlink(missing_ok=True)
        raise


def _default_name(predictions: Behavior) -> str:
    return predictions.name if predictions.name.startswith("decoded_") else f"decoded_{predictions.name}"


def _check_name(name: str) -> None:
    if not name or "/" in name or ":" in name:
        raise ValueError(f"{name!r} is not a valid NWB object name (non-empty, without '/' or ':').")


def _prepare(nwb_path, name, overwrite, storage, companion_path, output_path, threshold, new_bytes: int, kind=_DECODED):
    """Where a write goes and whether it may: the plan, the file it starts from, summaries of the
    source and of that file, and whether an existing series of that name is replaced."""
    plan = _plan(nwb_path, storage, companion_path, output_path, threshold)
    source, target = plan.source, plan.target
    # what the new target starts as: the source, the companion written before, or nothing
    base = (target if target.exists() else None) if plan.companion else source
    _check_target(plan, base, new_bytes)
    in_place = target == source
    with _locked(source, exclusive=in_place):
        pass  # fail early and clearly when the file is open elsewhere
    if base not in (None, source):
        with _locked(base, exclusive=True):
            pass
    before = _summarize(source, name, kind.module)
    previous = (
        before if base == source else (_summarize(base, name, kind.module) if base is not None else _FileSummary())
    )
    if base not in (None, source):
        _check_companion(plan, previous, before.unit_ids)
    if plan.pair is not None:
        pair = before if plan.pair == source else _summarize(plan.pair, name, kind.module)
        _check_pair(plan, name, pair, kind.module)
    replaced = _check_existing(previous, name, overwrite, base or target, kind)
    return plan, base, before, previous, replaced


def check_name_free(
    nwb_path, name: str, overwrite: bool = False, storage: str = "auto", companion_path=None, output_path=None
) -> Path:
    """Raise now, before any decoding, if :func:`write_predictions_to_nwb` with these arguments
    would refuse the name (or the target); returns the file it would write."""
    _check_name(name)
    plan = _prepare(nwb_path, name, overwrite, storage, companion_path, output_path, None, 0)[0]
    return plan.target


def _write_series(
    nwb_path, series: Behavior, name: str, kind: _Kind, rows_for, build, overwrite, storage, companion_path,
    output_path, threshold,
) -> Path:  # fmt: skip
    """The write both public writers share: checks, a temporary copy, verification, atomic replace.

    ``rows_for(unit_ids)`` gives the units-table rows to link from the source's unit ids (or
    None), ``build(rows, units_table)`` the pynwb object to add to ``processing/<kind.module>``.
    """
    plan, base, before, previous, replaced = _prepare(
        nwb_path, name, overwrite, storage, companion_path, output_path, threshold,
        series.values.nbytes + series.timestamps.nbytes, kind,
    )  # fmt: skip
    source, target = plan.source, plan.target
    in_place = target == source
    rows = rows_for(before.unit_ids)

    def fill(tmp: Path) -> None:
        if base is None:
            _new_companion(tmp, plan, before.unit_ids)
        else:
            _copy(base, tmp)
        with _units_detached(tmp, plan, linked=before.unit_ids is not None):
            if replaced:
                _remove_object(tmp, name, kind.module)
            _append(tmp, kind, lambda table: build(rows, table), plan.companion)
        _verify(tmp, series, name, previous, replaced, kind.module, rows)
        if plan.companion:
            _verify_companion(tmp, plan, before.unit_ids)

    with contextlib.ExitStack() as locks:
        locks.enter_context(_locked(source, exclusive=in_place))
        if base not in (None, source):
            locks.enter_context(_locked(base, exclusive=True))
        _stage(target, fill, watched=[source, target])
    return target


def write_predictions_to_nwb(
    nwb_path: str | Path,
    predictions: Behavior,
    model=None,
    name: str | None = None,
    overwrite: bool = False,
    metrics: dict | None = None,
    model_path: str | Path | None = None,
    unit_ids=None,
    output_path: str | Path | None = None,
    storage: str = "auto",
    companion_path: str | Path | None = None,
    companion_threshold: int | None = None,
) -> Path:
    """Store decoded behaviour, with the model's provenance, in an NWB file or its companion.

    The predictions become a ``DecodedBehavior`` (``ndx-poyo`` extension) in the ``behavior``
    processing module, created if missing. Every write goes into a temporary file next to its
    target, which is re-opened and checked before it atomically replaces the target; on any error
    the target is left byte-identical (or is not created) and the temporary file is removed.

    Parameters
    ----------
    nwb_path : str or Path
        The NWB (HDF5) file whose units fed the decoder (or a companion file written before).
    predictions : Behavior
        The decoded series, for example from :func:`decode_behavior`.
    model : POYO or None
        The model that decoded it; ``model.meta`` gives the preset, training sessions and
        version. Optional when ``model_path`` is given.
    name : str or None
        Name of the new object; ``decoded_<behaviour name>`` by default.
    overwrite : bool, default: False
        Replace a ``DecodedBehavior`` of the same name. Other objects are never replaced.
    metrics : dict or None
        Evaluation metrics (such as :func:`r2_score`'s result), stored as JSON.
    model_path : str or Path or None
        The saved model folder; its weights' sha256 identifies the model.
    unit_ids : list or None
        Units that fed the decoder, as SpikeInterface ids (``unit_name`` column, else ``id``).
        By default the model's units found in the file's units table.
    output_path : str or Path or None
        Write into a new file here (a copy of ``nwb_path`` plus the predictions) and leave
        ``nwb_path`` as it is.
    storage : {"auto", "copy", "companion"}, default: "auto"
        Where the predictions go. ``"copy"``: into ``nwb_path`` itself, through a full temporary
        copy of it. ``"companion"``: into a small companion NWB file whose ``/units`` is an HDF5
        external link to ``nwb_path``'s units, which is only ever opened read-only (for files
        holding raw ephys, too big to copy). ``"auto"``: the companion when ``companion_path``
        is given, when the companion exists already, or when ``nwb_path`` is larger than
        ``companion_threshold``; else the copy (always the copy with ``output_path``).
    companion_path : str or Path or None
        The companion file; by default ``<stem>.poyo.nwb`` beside ``nwb_path`` (see
        :func:`default_companion_path`), where :func:`read_predictions_from_nwb` looks for it.
    companion_threshold : int or None
        Size in bytes above which ``"auto"`` chooses the companion; :data:`COMPANION_THRESHOLD`
        (2 GiB) by default.

    Returns
    -------
    Path
        The file written: ``nwb_path`` (its target, for a symbolic link), ``output_path`` or the
        companion.

    Raises
    ------
    ValueError
        The name exists (and ``overwrite`` is False or the object is not a DecodedBehavior), also
        in the other file of a source/companion pair, or the arguments contradict each other.
    NWBFileInUseError
        The file is open elsewhere (it would be replaced under a reader's feet), or the source of
        a companion is being written.
    PermissionError
        The target or its folder is read-only.
    OSError
        The disk is full (``errno.ENOSPC``).
    """
    if not isinstance(predictions, Behavior):
        raise TypeError(f"predictions must be a sip.Behavior, got {type(predictions).__name__}.")
    if len(predictions) == 0:
        raise ValueError("predictions hold no samples; there is nothing to write.")
    name = name or _default_name(predictions)
    _check_name(name)
    provenance = model_provenance(model, model_path)
    expected = provenance.get("dimension_names")
    if expected and len(expected) != predictions.num_dimensions:
        raise ValueError(
            f"The model decodes {len(expected)} dimensions {expected}, "
            f"the predictions have {predictions.num_dimensions}."
        )
    metrics_json = _metrics_json(metrics)
    return _write_series(
        nwb_path, predictions, name, _DECODED,
        lambda file_ids: _unit_rows(file_ids, unit_ids, model),
        lambda rows, table: _build(predictions, name, provenance, metrics_json, rows, table),
        overwrite, storage, companion_path, output_path, companion_threshold,
    )  # fmt: skip


def write_rates_to_nwb(
    nwb_path: str | Path,
    rates: Behavior,
    model=None,
    name: str = "inferred_rates",
    overwrite: bool = False,
    metrics: dict | None = None,
    model_path: str | Path | None = None,
    unit_ids=None,
    bin_size: float | None = None,
    masking: str | None = None,
    output_path: str | Path | None = None,
    storage: str = "auto",
    companion_path: str | Path | None = None,
    companion_threshold: int | None = None,
) -> Path:
    """Store firing rates inferred by a model, with its provenance, in an NWB file or its companion.

    The rates become an ``InferredRates`` (``ndx-poyo`` extension) in the ``ecephys`` processing
    module, created if missing, with a ``units`` region giving the units-table row of each column,
    in column order. The write is the one of :func:`write_predictions_to_nwb`: into a temporary
    file next to its target, re-opened and checked before it atomically replaces the target; on
    any error the target is left byte-identical (or is not created) and the temporary file is
    removed.

    Parameters
    ----------
    nwb_path : str or Path
        The NWB (HDF5) file whose units the rates are of (or a companion file written before).
    rates : Behavior
        (T, N) firing rates in Hz at the bin centres, one column per unit; its ``dimension_names``
        are the unit ids, in column order. NaN marks a sample the model could not cover.
    model : object or None
        The model that inferred them (for example an MtM model); its ``meta`` gives the preset,
        training sessions and version. Optional when ``model_path`` is given.
    name : str, default: "inferred_rates"
        Name of the new object.
    overwrite : bool, default: False
        Replace an ``InferredRates`` of the same name. Other objects are never replaced.
    metrics : dict or None
        Evaluation metrics (such as bits per spike), stored as JSON.
    model_path : str or Path or None
        The saved model folder; its weights' sha256 identifies the model.
    unit_ids : list or None
        The unit of each column, as SpikeInterface ids (``unit_name`` column, else ``id``), in
        column order; ``rates.dimension_names`` by default. Every one must be in the file's units
        table.
    bin_size : float or None
        Width of the time bins in seconds, stored as the ``bin_size`` attribute.
    masking : str or None
        How the model was prompted to infer the rates (its masking scheme), stored as ``masking``.
    output_path : str or Path or None
        Write into a new file here (a copy of ``nwb_path`` plus the rates) and leave ``nwb_path``
        as it is.
    storage : {"auto", "copy", "companion"}, default: "auto"
        Where the rates go, as for :func:`write_predictions_to_nwb`: ``"copy"`` into ``nwb_path``
        itself, ``"companion"`` into a small companion NWB file whose ``/units`` links to
        ``nwb_path``'s units, ``"auto"`` the companion when ``companion_path`` is given, when the
        companion exists already, or when ``nwb_path`` is larger than ``companion_threshold``.
    companion_path : str or Path or None
        The companion file; by default ``<stem>.poyo.nwb`` beside ``nwb_path``, where
        :func:`read_rates_from_nwb` looks for it.
    companion_threshold : int or None
        Size in bytes above which ``"auto"`` chooses the companion; :data:`COMPANION_THRESHOLD`
        (2 GiB) by default.

    Returns
    -------
    Path
        The file written: ``nwb_path`` (its target, for a symbolic link), ``output_path`` or the
        companion.

    Raises
    ------
    ValueError
        A unit id is not in the file's units table (or the file has none), the rates are not in
        Hz, the name exists (and ``overwrite`` is False or the object is not an InferredRates),
        also in the other file of a source/companion pair, or the arguments contradict each other.
    NWBFileInUseError
        The file is open elsewhere, or the source of a companion is being written.
    PermissionError
        The target or its folder is read-only.
    OSError
        The disk is full (``errno.ENOSPC``).
    """
    if not isinstance(rates, Behavior):
        raise TypeError(f"rates must be a sip.Behavior, got {type(rates).__name__}.")
    if len(rates) == 0:
        raise ValueError("rates hold no samples; there is nothing to write.")
    _check_name(name)
    if rates.unit not in ("Hz", "unknown"):  # "unknown" is Behavior's default
        raise ValueError(
            f"rates must be firing rates in Hz, got unit {rates.unit!r}; divide counts per bin by the bin size."
        )
    if np.nanmin(rates.values, initial=0.0) < 0:
        raise ValueError("rates hold negative values; pass firing rates in Hz (exponentiate log rates first).")
    columns = list(rates.dimension_names) if unit_ids is None else [str(u) for u in unit_ids]
    if len(columns) != rates.num_dimensions:
        raise ValueError(f"{len(columns)} unit_ids for {rates.num_dimensions} columns of rates; pass one per column.")
    repeated = sorted({u for u in columns if columns.count(u) > 1})
    if repeated:
        raise ValueError(f"unit_ids name units more than once ({repeated[:5]}); each column is one unit.")
    if bin_size is not None:
        bin_size = float(bin_size)
        if not np.isfinite(bin_size) or bin_size <= 0:
            raise ValueError(f"bin_size must be a positive number of seconds, got {bin_size}.")
    if masking is not None and not isinstance(masking, str):
        raise TypeError(f"masking must be a str (the scheme or prompt), got {type(masking).__name__}.")
    behavior_only = ("decoded_variable", "dimension_names", "context")  # a decoder's fields, not a rates model's
    provenance = {k: v for k, v in model_provenance(model, model_path).items() if k not in behavior_only}
    metrics_json = _metrics_json(metrics)
    return _write_series(
        nwb_path, rates, name, _RATES,
        lambda file_ids: _rate_rows(file_ids, columns, nwb_path),
        lambda rows, table: _build_rates(rates, name, provenance, metrics_json, rows, table, bin_size, masking),
        overwrite, storage, companion_path, output_path, companion_threshold,
    )  # fmt: skip


def _check_pair(plan: _Plan, name: str, pair: _FileSummary, module: str = MODULE_NAME) -> None:
    """Refuse a name the other file of a source/companion pair holds: readers look in both."""
    if pair.existing_type is not None:
        raise ValueError(
            f"{plan.pair.name} already holds processing/{module}/{name}, and readers look in a file and its "
            f"companion alike, so {plan.target.name} cannot hold one of the same name; nothing was written. "
            "Choose another name."
        )


def _check_existing(summary: _FileSummary, name: str, overwrite: bool, path: Path, kind: _Kind = _DECODED) -> bool:
    """True when an existing object of the kind's type and that name is to be replaced; raise when it may not be."""
    if summary.existing_type is None:
        return False
    where = f"processing/{kind.module}/{name}"
    if not overwrite:
        raise ValueError(
            f"{path.name} already holds {where}; pass overwrite=True (--overwrite) to replace it, "
            "or choose another name."
        )
    if summary.existing_type != kind.neurodata_type:
        raise ValueError(
            f"{where} in {path.name} is a {summary.existing_type}, not {_a(kind.neurodata_type)}; "
            f"only {kind.what} are ever replaced. Choose another name."
        )
    return True


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def write_session_nwb(path: Path, sorting, behavior: Behavior, description: str) -> Path:
    """Write a simulated sorting's units and one behavioural series into a new NWB file.

    The file passes nwbinspector without critical findings or best-practice violations: it names
    a (simulated) subject, sets the units' ``resolution`` to the sorting's frame period, and
    stores regularly sampled behaviour as ``starting_time`` + ``rate``.

    Parameters
    ----------
    path : Path
        The new file.
    sorting : BaseSorting
        The units, for example from :func:`simulate_session`.
    behavior : Behavior
        The behavioural series the units are tuned to.
    description : str
        The session description.

    Returns
    -------
    Path
        ``path``.
    """
    from datetime import datetime, timezone

    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.file import Subject
    from pynwb.misc import Units

    nwbfile = NWBFile(
        session_description=description,
        identifier=f"sip-demo-{path.stem}",
        session_start_time=datetime(2026, 1, 1, tzinfo=timezone.utc),
        subject=Subject(
            subject_id="simulated",
            species="Macaca mulatta",  # cosine-tuned reaching units, as in monkey motor cortex
            sex="U",
            age="P5Y",
            description="No animal: the spikes and behaviour were simulated by spikeinterface-poyo.",
        ),
    )
    nwbfile.units = Units(
        name="units",
        description="Units of the simulated sorting.",
        resolution=1.0 / sorting.sampling_frequency,  # spike times fall on its frame grid
    )
    area = sorting.get_property("brain_area")
    if area is not None:  # region labels, as the multi-region simulation sets them
        nwbfile.add_unit_column("brain_area", "Brain region of the unit.")
    for i, unit_id in enumerate(sorting.unit_ids):
        extra = {} if area is None else {"brain_area": str(area[i])}
        nwbfile.add_unit(spike_times=sorting.get_unit_spike_train(unit_id, return_times=True), **extra)
    module = nwbfile.create_processing_module("behavior", "Simulated behaviour")
    module.add(
        TimeSeries(
            name=behavior.name,
            data=behavior.values,
            unit=behavior.unit,
            description=f"Ground-truth {behavior.name} of the simulated session.",
            **_time_kwargs(behavior.timestamps),
        )
    )
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path
