"""Write decoded behaviour into NWB files, with the model's provenance, without ever corrupting them.

Decoded series are stored as ``DecodedBehavior`` objects, a TimeSeries subtype defined by the
``ndx-poyo`` extension (``nwb_spec/``), in the ``behavior`` processing module. The extension is
loaded when this module is imported and its spec is cached in every file written, so a reader
without this package can still open the data with plain pynwb.

A write never touches the original file: it goes into a temporary copy next to the file, the
copy is re-opened and checked, and only then replaces the original with :func:`os.replace`
(atomic on one file system). On any failure the original is left byte-identical.
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

import h5py
import numpy as np
import pynwb
from hdmf.common import DynamicTableRegion

from .. import __version__
from ..core.behavior import Behavior
from .atomic import replace_file
from .models import CONFIG_FILE, model_sha256
from .nwb_read import _decode, _timestamps, _unit_ids_h5
from .nwb_spec import MODULE_NAME, NAMESPACE, DecodedBehavior

logger = logging.getLogger(__name__)

# the extra room a write needs besides the copy itself: the new datasets and HDF5 metadata
_SPACE_MARGIN = 16 * 2**20


class NWBFileInUseError(OSError):
    """The NWB file is open elsewhere (h5py, pynwb, a SpikeInterface extractor) and cannot be replaced."""


class NWBWriteError(RuntimeError):
    """The written copy did not re-open or check out; the original file was left unchanged."""


# ---------------------------------------------------------------------------------------------
# provenance


def model_provenance(model=None, model_path: str | Path | None = None) -> dict:
    """Provenance attributes of a ``DecodedBehavior`` from a model and/or its saved folder.

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
        ``dimension_names`` and ``model_sha256`` (the last only with ``model_path``); unknown
        fields are left out.
    """
    if model is None and model_path is None:
        raise ValueError("Pass model= or model_path= so the decoded series records which model produced it.")
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
# checks on the target before anything is written


def _is_writable(path: Path) -> bool:
    """Write permission, by the mode bits as well as access(): root passes access() on read-only files."""
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _check_target(source: Path, target: Path) -> None:
    """Clear errors for a missing source, a read-only target or folder, and a lack of disk space."""
    if not source.is_file():
        raise FileNotFoundError(f"No NWB file at {source}.")
    if target == source and not _is_writable(source):
        raise PermissionError(
            f"{source} is read-only; nothing was written. Make it writable (chmod u+w) or write into a copy "
            "(output_path=..., or --output on the command line)."
        )
    if target != source and target.exists():
        raise FileExistsError(f"{target} exists already; choose another output path or write into it in place.")
    folder = target.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"The folder {folder} does not exist.")
    if not _is_writable(folder):
        raise PermissionError(
            f"The folder {folder} is read-only; nothing was written. The file is replaced atomically through a "
            "temporary copy next to it, so its folder must be writable."
        )
    needed = source.stat().st_size + _SPACE_MARGIN
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise OSError(
            errno.ENOSPC,
            f"Not enough disk space in {folder}: the write needs about {needed / 2**20:.0f} MiB "
            f"(a temporary copy of the file) and {free / 2**20:.0f} MiB are free; nothing was written.",
        )


def _in_use_message(path: Path) -> str:
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
            raise NWBFileInUseError(_in_use_message(path)) from None
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
            raise NWBFileInUseError(_in_use_message(path)) from None
        raise


@dataclass
class _FileSummary:
    """What the writer needs to know about the original, read once before it is locked."""

    paths: set[str] = field(default_factory=set)
    existing_type: str | None = None
    unit_ids: list[str] | None = None


def _summarize(path: Path, name: str) -> _FileSummary:
    """Every object path, the type of ``behavior/<name>`` if any, and the units' ids."""
    summary = _FileSummary()
    try:
        with h5py.File(path, "r") as f:
            f.visit(summary.paths.add)
            existing = f.get(f"processing/{MODULE_NAME}/{name}")
            if existing is not None:
                summary.existing_type = _decode(existing.attrs.get("neurodata_type", "unknown"))
            if "units" in f:
                summary.unit_ids = _unit_ids_h5(f["units"])
    except OSError as err:
        if "lock" in str(err) or "already open" in str(err):
            raise NWBFileInUseError(_in_use_message(path)) from None
        raise OSError(f"{path} cannot be read as an HDF5 NWB file: {err}") from None
    return summary


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
    index = {u: i for i, u in enumerate(file_ids)}
    wanted = [str(u) for u in unit_ids]
    missing = [u for u in wanted if u not in index]
    if missing:
        raise ValueError(
            f"{len(missing)} of the {len(wanted)} unit_ids are not in the file's units table (e.g. {missing[0]!r}); "
            f"it holds {len(file_ids)} units such as {file_ids[:3]}."
        )
    return sorted(index[u] for u in wanted)


# ---------------------------------------------------------------------------------------------
# building and appending the DecodedBehavior


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
    from hdmf.backends.hdf5 import H5DataIO

    variable = provenance.get("decoded_variable", predictions.name)
    description = (
        f"{variable} decoded from spiking activity by the {provenance['model_name']} model"
        + (f" (preset {provenance['preset']!r})" if "preset" in provenance else "")
        + f", written by spikeinterface-poyo {__version__}."
        + (" Samples the decoder could not cover are NaN." if not predictions.valid.all() else "")
    )
    fields = {k: v for k, v in provenance.items() if k != "dimension_names"}
    if rows is not None:
        fields["units"] = DynamicTableRegion(
            name="units", data=rows, description="Rows of the units table that fed the decoder.", table=units_table
        )
    if metrics is not None:
        fields["metrics"] = metrics
    return DecodedBehavior(
        name=name,
        data=H5DataIO(predictions.values, compression="gzip"),
        unit=predictions.unit or "unknown",
        description=description,
        dimension_names=list(predictions.dimension_names),
        **_time_kwargs(predictions.timestamps),
        **fields,
    )


def _remove_object(path: Path, name: str) -> None:
    """Delete ``processing/behavior/<name>`` from the (temporary) copy before it is written again."""
    with h5py.File(path, "r+") as f:
        del f[f"processing/{MODULE_NAME}/{name}"]


def _append(path: Path, predictions: Behavior, name: str, provenance: dict, metrics, rows) -> None:
    """Add the DecodedBehavior to the file at ``path`` (the temporary copy) in pynwb's append mode."""
    with pynwb.NWBHDF5IO(str(path), "a") as io:
        nwbfile = io.read()
        series = _build(predictions, name, provenance, metrics, rows, nwbfile.units)
        if MODULE_NAME not in nwbfile.processing:
            nwbfile.create_processing_module(MODULE_NAME, "Processed behavioural data.")
        nwbfile.processing[MODULE_NAME].add(series)
        io.write(nwbfile)


def _verify(path: Path, predictions: Behavior, name: str, before: _FileSummary, replaced: bool) -> None:
    """Re-open the written copy and check it: schema of the new object, its values, nothing lost."""
    with h5py.File(path, "r") as f:
        after: set[str] = set()
        f.visit(after.add)
    prefix = f"processing/{MODULE_NAME}/{name}"
    lost = {p for p in before.paths - after if not (replaced and (p == prefix or p.startswith(prefix + "/")))}
    if lost:
        raise NWBWriteError(f"The written copy lacks {len(lost)} objects of the original (e.g. {sorted(lost)[0]}).")
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        series = io.read().processing[MODULE_NAME][name]
        if not np.array_equal(np.asarray(series.data[:]), predictions.values, equal_nan=True):
            raise NWBWriteError(f"{name} reads back different values than were written.")
        if not np.allclose(_timestamps(series), predictions.timestamps, rtol=0, atol=1e-9):
            raise NWBWriteError(f"{name} reads back different timestamps than were written.")
    errors = _schema_errors(path, name)
    if errors:
        raise NWBWriteError(f"{name} does not match the {NAMESPACE} schema: {'; '.join(map(str, errors[:3]))}")


def _schema_errors(path: Path, name: str) -> list:
    """Validate the new object against the spec cached in the file, as a reader without this package sees it.

    Only our object is validated: problems the file had before are not ours to block on.
    """
    from hdmf.build import BuildManager
    from hdmf.validate import ValidatorMap

    type_map = _cached_type_map(path)
    with pynwb.NWBHDF5IO(str(path), "r", manager=BuildManager(type_map), load_namespaces=False) as io:
        builder = io.read_builder()["processing"][MODULE_NAME][name]
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


def _default_name(predictions: Behavior) -> str:
    return predictions.name if predictions.name.startswith("decoded_") else f"decoded_{predictions.name}"


def _check_name(name: str) -> None:
    if not name or "/" in name or ":" in name:
        raise ValueError(f"{name!r} is not a valid NWB object name (non-empty, without '/' or ':').")


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
) -> Path:
    """Store decoded behaviour, with the model's provenance, in an NWB file.

    The predictions become a ``DecodedBehavior`` (``ndx-poyo`` extension) in the ``behavior``
    processing module, created if missing. The write goes into a temporary copy next to the
    file, which is re-opened and checked before it atomically replaces the original; on any
    error the original is left byte-identical and the copy is removed.

    Parameters
    ----------
    nwb_path : str or Path
        The NWB (HDF5) file.
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

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ValueError
        The name exists (and ``overwrite`` is False or the object is not a DecodedBehavior).
    NWBFileInUseError
        The file is open elsewhere (it would be replaced under a reader's feet).
    PermissionError
        The file or its folder is read-only.
    OSError
        The disk is full (``errno.ENOSPC``).
    """
    if not isinstance(predictions, Behavior):
        raise TypeError(f"predictions must be a sip.Behavior, got {type(predictions).__name__}.")
    if len(predictions) == 0:
        raise ValueError("predictions hold no samples; there is nothing to write.")
    source = Path(nwb_path).resolve()  # a symlink's target is what gets updated, not the link
    target = Path(output_path).absolute() if output_path is not None else source
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
    _check_target(source, target)
    in_place = target == source
    with _locked(source, exclusive=in_place):
        pass  # fail early and clearly when the file is open elsewhere
    before = _summarize(source, name)
    replaced = _check_existing(before, name, overwrite, source)
    rows = _unit_rows(before.unit_ids, unit_ids, model)
    with _locked(source, exclusive=in_place):
        stamp = source.stat()
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            _copy(source, tmp)
            if replaced:
                _remove_object(tmp, name)
            _append(tmp, predictions, name, provenance, metrics_json, rows)
            _verify(tmp, predictions, name, before, replaced)
            now = source.stat()
            if (now.st_size, now.st_mtime_ns) != (stamp.st_size, stamp.st_mtime_ns):
                raise NWBWriteError(f"{source} was modified by someone else during the write; nothing was written.")
            replace_file(tmp, target)
        except Exception as err:
            tmp.unlink(missing_ok=True)
            if _is_disk_full(err) and not isinstance(err, NWBWriteError):
                message = f"The disk filled up while writing {target.name}; it is unchanged."
                raise OSError(errno.ENOSPC, message) from err
            raise
        except BaseException:  # KeyboardInterrupt: still never leave the copy behind
            tmp.unlink(missing_ok=True)
            raise
    return target


def _check_existing(summary: _FileSummary, name: str, overwrite: bool, path: Path) -> bool:
    """True when an existing DecodedBehavior of that name is to be replaced; raise when it may not be."""
    if summary.existing_type is None:
        return False
    if not overwrite:
        raise ValueError(
            f"{path.name} already holds processing/{MODULE_NAME}/{name}; pass overwrite=True (--overwrite) to "
            "replace it, or choose another name."
        )
    if summary.existing_type != "DecodedBehavior":
        raise ValueError(
            f"processing/{MODULE_NAME}/{name} in {path.name} is a {summary.existing_type}, not a DecodedBehavior; "
            "only decoded series are ever replaced. Choose another name."
        )
    return True


def write_session_nwb(path: Path, sorting, behavior: Behavior, description: str) -> Path:
    """Write a sorting's units and one behavioural series into a new NWB file."""
    from datetime import datetime, timezone

    from pynwb import NWBHDF5IO, NWBFile, TimeSeries

    nwbfile = NWBFile(
        session_description=description,
        identifier=f"sip-demo-{path.stem}",
        session_start_time=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )
    for unit_id in sorting.unit_ids:
        nwbfile.add_unit(spike_times=sorting.get_unit_spike_train(unit_id, return_times=True))
    module = nwbfile.create_processing_module("behavior", "Simulated behaviour")
    module.add(
        TimeSeries(
            name=behavior.name,
            data=behavior.values,
            timestamps=behavior.timestamps,
            unit=behavior.unit,
            description="Ground-truth 2-D velocity the simulated units are tuned to.",
        )
    )
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path
