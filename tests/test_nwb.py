"""Writing decoded behaviour into NWB files (ndx-poyo), reading it back, and never corrupting the file."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from uuid import uuid4

import h5py
import numpy as np
import pynwb
import pytest
from conftest import SHARED_FILES, shared_file

import spikeinterface_poyo as sip
from spikeinterface_poyo.io import atomic, nwb_read, nwb_spec
from spikeinterface_poyo.io import nwb_write as nwb
from spikeinterface_poyo.io.models import model_sha256

ROOT = Path(__file__).resolve().parents[1]
REAL_FILES = SHARED_FILES
SPEC_FILES = ("ndx-poyo.namespace.yaml", "ndx-poyo.extensions.yaml")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------------
# helpers and fixtures


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def build_nwb(path: Path, sorting, behavior, layout: str = "behavioral_time_series", electrical_series=False) -> Path:
    """An NWB file as labs write them: ``nwbfile.add_unit`` units (no resolution), behaviour in ``layout``."""
    from pynwb.behavior import BehavioralTimeSeries, Position, SpatialSeries
    from pynwb.ecephys import ElectricalSeries

    nwbfile = pynwb.NWBFile(
        session_description="simulated session for tests",
        identifier=str(uuid4()),
        session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc),
    )
    if electrical_series:
        device = nwbfile.create_device("probe")
        group = nwbfile.create_electrode_group("shank0", description="test shank", location="M1", device=device)
        for _ in range(4):
            nwbfile.add_electrode(group=group, location="M1")
        region = nwbfile.create_electrode_table_region(list(range(4)), "all electrodes")
        raw = np.zeros((3000, 4), dtype=np.int16)
        nwbfile.add_acquisition(ElectricalSeries(name="ElectricalSeries", data=raw, electrodes=region, rate=30000.0))
    for unit_id in sorting.unit_ids:
        nwbfile.add_unit(spike_times=sorting.get_unit_spike_train(unit_id, return_times=True), id=int(unit_id))
    common = dict(name=behavior.name, data=behavior.values, timestamps=behavior.timestamps)
    if layout == "acquisition":
        nwbfile.add_acquisition(pynwb.TimeSeries(unit="a.u.", **common))
    else:
        module = nwbfile.create_processing_module("behavior", "behaviour")
        if layout == "position":
            module.add(Position(spatial_series=SpatialSeries(reference_frame="arena centre", unit="meters", **common)))
        elif layout == "behavioral_time_series":
            module.add(BehavioralTimeSeries(time_series=pynwb.TimeSeries(unit="a.u.", **common)))
        else:
            module.add(pynwb.TimeSeries(unit="a.u.", **common))
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path


@pytest.fixture(scope="module")
def session():
    return sip.simulate_session(duration=30.0, num_units=12, seed=1)


@pytest.fixture(scope="module")
def trained(session, tmp_path_factory):
    """A tiny model trained for a few seconds, and its saved folder."""
    sorting, behavior = session
    model = sip.train_decoder(sorting, behavior, preset="tiny", max_epochs=1, max_time_s=5, progress_bar=False)
    return model, sip.save_model(model, tmp_path_factory.mktemp("model") / "decoder")


@pytest.fixture
def session_file(session, tmp_path):
    sorting, behavior = session
    return build_nwb(tmp_path / "session.nwb", sorting, behavior)


@pytest.fixture
def predictions(session):
    """Predictions as a decoder would give them: noisy truth, NaN where it could not decode."""
    _, behavior = session
    values = behavior.values + np.random.default_rng(0).normal(scale=0.3, size=behavior.values.shape)
    values[:7] = np.nan
    return sip.Behavior(behavior.timestamps, values, name="velocity", unit="a.u.", dimension_names=["x", "y"])


# a reader that has never imported spikeinterface_poyo: plain pynwb with the cached spec, pynwb's
# validator and nwbinspector, as a user without our package would run them
PLAIN_READER = r"""
import json, sys
import numpy as np
from nwbinspector import Importance, inspect_nwbfile
from pynwb import NWBHDF5IO, validate

for path, name, out in json.loads(sys.argv[1]):
    with NWBHDF5IO(path, "r") as io:
        nwbfile = io.read()
        series = nwbfile.processing["behavior"][name]
        data = series.data[:]
        if series.timestamps is not None:
            timestamps = series.timestamps[:]
        else:
            timestamps = series.starting_time + np.arange(len(data)) / series.rate
        info = dict(
            type=series.neurodata_type,
            namespace=series.namespace,
            model_sha256=series.model_sha256,
            preset=series.preset,
            training_sessions=list(series.training_sessions),
            metrics=json.loads(series.metrics) if series.metrics else None,
            rows=series.units.data[:].tolist() if series.units is not None else None,
            units_table=series.units.table.name if series.units is not None else None,
            file_units=nwbfile.units.id[:].tolist() if nwbfile.units is not None else None,
            session_start_time=nwbfile.session_start_time.isoformat(),
            identifier=nwbfile.identifier,
        )
    np.savez(out, data=data, timestamps=timestamps)
    info["errors"] = [str(e) for e in validate(path=path)]
    severe = {Importance.CRITICAL, Importance.BEST_PRACTICE_VIOLATION}
    info["inspector"] = [
        f"{m.importance.name} {m.check_function_name}: {m.message}"
        for m in inspect_nwbfile(nwbfile_path=path, skip_validate=True)  # validated just above
        if m.importance in severe
        and ((m.location or "").startswith(f"/processing/behavior/{name}") or m.object_name == name)
    ]
    info["ours_imported"] = any(m.startswith("spikeinterface_poyo") for m in sys.modules)
    print(json.dumps(info), flush=True)
"""


def read_plainly(jobs: list[tuple[Path, str]], workdir: Path) -> list[tuple[dict, np.ndarray, np.ndarray]]:
    """Run :data:`PLAIN_READER` once over ``(path, name)`` jobs; per job its info, data and timestamps."""
    outs = [workdir / f"plain{i}.npz" for i in range(len(jobs))]
    spec = json.dumps([(str(p), name, str(out)) for (p, name), out in zip(jobs, outs)])
    result = subprocess.run(
        [sys.executable, "-c", PLAIN_READER, spec],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=workdir,  # away from the repository, so nothing of ours is importable by accident
    )
    assert result.returncode == 0, result.stderr
    infos = [json.loads(line) for line in result.stdout.strip().splitlines() if line.startswith("{")]
    return [(info, np.load(out)["data"], np.load(out)["timestamps"]) for info, out in zip(infos, outs)]


def inspector_problems(path: Path, name: str) -> list[str]:
    """nwbinspector messages at CRITICAL or BEST_PRACTICE_VIOLATION about our object."""
    from nwbinspector import Importance, inspect_nwbfile

    severe = {Importance.CRITICAL, Importance.BEST_PRACTICE_VIOLATION}
    ours = f"/processing/behavior/{name}"
    return [
        f"{m.importance.name} {m.check_function_name}: {m.message}"
        for m in inspect_nwbfile(nwbfile_path=str(path))
        if m.importance in severe and ((m.location or "").startswith(ours) or m.object_name == name)
    ]


def assert_untouched(path: Path, digest: str) -> None:
    """Byte-identical, and no temporary copy left beside it."""
    assert sha256(path) == digest
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


# ---------------------------------------------------------------------------------------------
# the extension


def test_spec_shipped_in_package_matches_source():
    for name in SPEC_FILES:
        source = ROOT / "extensions" / name
        shipped = ROOT / "src" / "spikeinterface_poyo" / "io" / "nwb_spec" / name
        assert source.read_bytes() == shipped.read_bytes(), f"{name}: run extensions/create_extension_spec.py"
    assert nwb_spec.NAMESPACE_PATH.parent == Path(nwb.__file__).parent / "nwb_spec"
    assert '"io/nwb_spec/*.yaml"' in (ROOT / "pyproject.toml").read_text()


def test_generator_writes_the_shipped_spec(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "create_extension_spec", ROOT / "extensions" / "create_extension_spec.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_spec(tmp_path)
    for name in SPEC_FILES:
        assert (tmp_path / name).read_text() == (nwb_spec.SPEC_DIR / name).read_text()


def test_namespace_loaded_on_import():
    assert "ndx-poyo" in pynwb.get_type_map().namespace_catalog.namespaces
    assert issubclass(nwb_spec.DecodedBehavior, pynwb.TimeSeries)
    assert pynwb.get_class("DecodedBehavior", "ndx-poyo") is nwb_spec.DecodedBehavior


# ---------------------------------------------------------------------------------------------
# round trips


@pytest.fixture(scope="module")
def real_round_trips(trained, tmp_path_factory):
    """Predictions written into a copy of every real file, then read back by a plain-pynwb process."""
    model, model_dir = trained
    folder = tmp_path_factory.mktemp("real")
    cases = {}
    for filename in REAL_FILES:
        path = folder / filename
        shutil.copyfile(shared_file(filename), path)
        path.chmod(0o644)
        behaviors = sip.list_nwb_behaviors(path)
        wanted = [n for n in ("hand_velocity", "velocity") if n in behaviors] or sorted(behaviors)
        if wanted:
            truth = sip.read_nwb_behavior(path, wanted[0])
        else:  # a file with spikes only: any times will do
            t = np.arange(0.0, 10.0, 0.02)
            truth = sip.Behavior(t, np.stack([np.sin(t), np.cos(t)], axis=1), name="velocity", unit="a.u.")
        values = truth.values[:, :1].repeat(2, axis=1) if truth.num_dimensions != 2 else truth.values
        values = values * 0.5 + 1.0  # the model decodes 2 dimensions; any series gives the times
        values[::50] = np.nan
        predictions = sip.Behavior(truth.timestamps, values, name=truth.name, unit=truth.unit)
        with h5py.File(path, "r") as f:
            unit_ids = nwb_read._unit_ids_h5(f["units"])[:5]
        metrics = {"r2": np.array([0.5, 0.25]), "mean": np.float64(0.375)}
        nwb.write_predictions_to_nwb(path, predictions, model, metrics=metrics, model_path=model_dir, unit_ids=unit_ids)
        cases[filename] = dict(
            path=path,
            name=f"decoded_{truth.name}",
            truth=truth,
            predictions=predictions,
            unit_ids=unit_ids,
            before=behaviors,
        )
    plain = read_plainly([(c["path"], c["name"]) for c in cases.values()], folder)
    return {filename: {**case, "plain": result} for (filename, case), result in zip(cases.items(), plain)}


@pytest.mark.parametrize("filename", REAL_FILES)
def test_round_trip_on_real_files(filename, real_round_trips, trained):
    case = real_round_trips[filename]
    path, name, predictions = case["path"], case["name"], case["predictions"]
    info, data, timestamps = case["plain"]
    assert not info["ours_imported"]
    assert info["type"] == "DecodedBehavior" and info["namespace"] == "ndx-poyo"
    assert info["errors"] == []
    assert info["inspector"] == []
    np.testing.assert_array_equal(data, predictions.values)
    np.testing.assert_allclose(timestamps, predictions.timestamps, rtol=0, atol=1e-9)
    assert info["model_sha256"] == model_sha256(trained[1])
    assert info["preset"] == "tiny" and info["training_sessions"] == ["session"]
    assert info["metrics"] == {"r2": [0.5, 0.25], "mean": 0.375}
    assert info["rows"] == [0, 1, 2, 3, 4] and info["units_table"] == "units"
    with h5py.File(path, "r") as f:
        assert info["file_units"] == f["units/id"][:].tolist()
    # nothing of the original was lost, and the truth still reads the same
    assert set(case["before"]) | {name} == set(sip.list_nwb_behaviors(path))
    if case["truth"].name in case["before"]:
        np.testing.assert_array_equal(sip.read_nwb_behavior(path, case["truth"].name).values, case["truth"].values)
    back, meta = sip_read(path, name)
    np.testing.assert_array_equal(back.values, predictions.values)
    assert meta["unit_ids"] == case["unit_ids"]


def sip_read(path, name):
    return nwb_read.read_predictions_from_nwb(path, name, return_metadata=True)


def test_decoded_with_model_round_trip(session, trained, session_file, tmp_path):
    sorting, behavior = session
    model, model_dir = trained
    decoded = sip.decode_behavior(sorting, model, timestamps=behavior.timestamps, progress_bar=False)
    score = sip.r2_score(behavior, decoded)

    written = nwb.write_predictions_to_nwb(session_file, decoded, model, metrics=score, model_path=model_dir)

    assert written == session_file.resolve()
    back, meta = nwb_read.read_predictions_from_nwb(session_file, "decoded_velocity", return_metadata=True)
    np.testing.assert_array_equal(back.values, decoded.values)
    np.testing.assert_allclose(back.timestamps, decoded.timestamps, rtol=0, atol=1e-9)
    assert back.name == "decoded_velocity" and back.unit == "a.u." and back.dimension_names == ["x", "y"]
    assert meta["model_name"] == "POYO" and meta["model_version"] == sip.__version__
    assert meta["model_sha256"] == model_sha256(model_dir)
    assert meta["preset"] == "tiny" and meta["training_sessions"] == ["session"]
    assert meta["decoded_variable"] == "velocity"
    assert meta["metrics"]["mean"] == pytest.approx(score["mean"])
    # by default the region holds the model's units found in the file: all of them here
    assert meta["unit_ids"] == [str(u) for u in sorting.unit_ids]
    # regular sampling is stored as starting_time + rate (NWB best practice)
    with h5py.File(session_file, "r") as f:
        group = f["processing/behavior/decoded_velocity"]
        assert "timestamps" not in group and "starting_time" in group
    assert inspector_problems(session_file, "decoded_velocity") == []


def test_irregular_timestamps_are_stored_as_timestamps(session_file, predictions, trained):
    keep = np.ones(len(predictions), dtype=bool)
    keep[100:160] = False  # a gap, as between trials
    gappy = sip.Behavior(predictions.timestamps[keep], predictions.values[keep], name="velocity")
    nwb.write_predictions_to_nwb(session_file, gappy, trained[0])
    with h5py.File(session_file, "r") as f:
        assert "timestamps" in f["processing/behavior/decoded_velocity"]
    back = nwb_read.read_predictions_from_nwb(session_file)
    np.testing.assert_array_equal(back.timestamps, gappy.timestamps)
    np.testing.assert_array_equal(back.values, gappy.values)


def test_provenance_from_model_path_alone(session_file, predictions, trained):
    _, model_dir = trained
    nwb.write_predictions_to_nwb(session_file, predictions, model_path=model_dir, name="from_folder")
    _, meta = nwb_read.read_predictions_from_nwb(session_file, "from_folder", return_metadata=True)
    assert meta["model_sha256"] == model_sha256(model_dir) and meta["preset"] == "tiny"
    assert meta["unit_ids"] is None and meta["metrics"] is None


def test_module_created_when_missing(session, predictions, trained, tmp_path):
    sorting, behavior = session
    path = build_nwb(tmp_path / "acq.nwb", sorting, behavior, layout="acquisition")
    nwb.write_predictions_to_nwb(path, predictions, trained[0])
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        assert "decoded_velocity" in nwbfile.processing["behavior"].data_interfaces
        assert "velocity" in nwbfile.acquisition


def test_explicit_unit_ids_and_unknown_ones(session_file, predictions, trained):
    model = trained[0]
    nwb.write_predictions_to_nwb(session_file, predictions, model, unit_ids=[3, 1])
    _, meta = nwb_read.read_predictions_from_nwb(session_file, return_metadata=True)
    assert meta["unit_ids"] == ["1", "3"]
    digest = sha256(session_file)
    with pytest.raises(ValueError, match="not in the file's units table"):
        nwb.write_predictions_to_nwb(session_file, predictions, model, name="other", unit_ids=[1, 99])
    assert_untouched(session_file, digest)


def test_output_path_leaves_the_source_alone(session_file, predictions, trained, tmp_path):
    digest = sha256(session_file)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    copy = out_dir / "copy.nwb"
    assert nwb.write_predictions_to_nwb(session_file, predictions, trained[0], output_path=copy) == copy
    assert sha256(session_file) == digest
    np.testing.assert_array_equal(nwb_read.read_predictions_from_nwb(copy).values, predictions.values)
    assert sorted(p.name for p in out_dir.iterdir()) == ["copy.nwb"]
    with pytest.raises(FileExistsError):
        nwb.write_predictions_to_nwb(session_file, predictions, trained[0], output_path=copy)


# ---------------------------------------------------------------------------------------------
# names and overwrite


def test_existing_name_raises_and_overwrite_replaces(session_file, predictions, trained):
    model = trained[0]
    nwb.write_predictions_to_nwb(session_file, predictions, model)
    digest = sha256(session_file)
    with pytest.raises(ValueError, match="overwrite=True"):
        nwb.write_predictions_to_nwb(session_file, predictions, model)
    assert_untouched(session_file, digest)

    doubled = sip.Behavior(predictions.timestamps, predictions.values * 2, name="velocity")
    nwb.write_predictions_to_nwb(session_file, doubled, model, overwrite=True, metrics={"mean": 0.1})
    back, meta = nwb_read.read_predictions_from_nwb(session_file, "decoded_velocity", return_metadata=True)
    np.testing.assert_array_equal(back.values, doubled.values)
    assert meta["metrics"] == {"mean": 0.1}
    assert pynwb.validate(path=str(session_file)) == []


def test_overwrite_never_replaces_recorded_data(session_file, predictions, trained):
    digest = sha256(session_file)
    with pytest.raises(ValueError, match="not a DecodedBehavior"):
        nwb.write_predictions_to_nwb(session_file, predictions, trained[0], name="BehavioralTimeSeries", overwrite=True)
    assert_untouched(session_file, digest)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(name="a/b"), ValueError, "valid NWB object name"),
        (dict(model=None), ValueError, "model= or model_path="),
        (dict(metrics=[0.5]), TypeError, "metrics must be a dict"),
    ],
)
def test_bad_arguments(session_file, predictions, trained, kwargs, error, match):
    digest = sha256(session_file)
    with pytest.raises(error, match=match):
        nwb.write_predictions_to_nwb(session_file, predictions, **{"model": trained[0], **kwargs})
    assert_untouched(session_file, digest)


def test_dimension_mismatch_and_wrong_type(session_file, predictions, trained):
    one_d = sip.Behavior(predictions.timestamps, predictions.values[:, 0], name="velocity")
    with pytest.raises(ValueError, match="decodes 2 dimensions"):
        nwb.write_predictions_to_nwb(session_file, one_d, trained[0])
    with pytest.raises(TypeError, match="sip.Behavior"):
        nwb.write_predictions_to_nwb(session_file, predictions.values, trained[0])


def test_reader_errors(session_file, predictions, trained):
    with pytest.raises(ValueError, match="holds 0 decoded series"):
        nwb_read.read_predictions_from_nwb(session_file)
    nwb.write_predictions_to_nwb(session_file, predictions, trained[0])
    with pytest.raises(ValueError, match="No decoded series named 'nope'.*decoded_velocity"):
        nwb_read.read_predictions_from_nwb(session_file, "nope")
    with pytest.raises(FileNotFoundError):
        nwb_read.read_predictions_from_nwb(session_file.with_name("missing.nwb"))


# ---------------------------------------------------------------------------------------------
# never corrupt, never lose


def _raise(*args, **kwargs):
    raise RuntimeError("injected failure")


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def _write_then_raise(original):
    def write(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise RuntimeError("injected failure after pynwb wrote")

    return write


def _half_copy_then_full_disk(source, target, *args, **kwargs):
    data = Path(source).read_bytes()
    Path(target).write_bytes(data[: len(data) // 2])
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize(
    "target, attribute, replacement, error",
    [
        (nwb, "_copy", _raise, RuntimeError),
        (nwb.shutil, "copyfile", _half_copy_then_full_disk, OSError),
        (nwb, "_remove_object", _raise, RuntimeError),  # only reached with overwrite=True
        (nwb, "_build", _raise, RuntimeError),
        (pynwb.NWBHDF5IO, "write", "write_then_raise", RuntimeError),
        (nwb, "_verify", _raise, RuntimeError),
        (atomic, "fsync_file", _raise, RuntimeError),
        (nwb.os, "replace", _raise, RuntimeError),
        (nwb, "_append", "interrupt", KeyboardInterrupt),
    ],
    ids=["copy", "disk-full-mid-copy", "remove-old", "build", "pynwb-write", "verify", "fsync", "replace", "ctrl-c"],
)
def test_interrupted_write_leaves_original_identical(
    session_file, predictions, trained, monkeypatch, target, attribute, replacement, error
):
    model = trained[0]
    nwb.write_predictions_to_nwb(session_file, predictions, model)  # something for overwrite to replace
    digest = sha256(session_file)
    if replacement == "write_then_raise":
        replacement = _write_then_raise(pynwb.NWBHDF5IO.write)
    elif replacement == "interrupt":
        replacement = _interrupt
    monkeypatch.setattr(target, attribute, replacement)
    with pytest.raises(error):
        nwb.write_predictions_to_nwb(session_file, predictions, model, overwrite=True)
    monkeypatch.undo()
    assert_untouched(session_file, digest)
    back = nwb_read.read_predictions_from_nwb(session_file)  # and it still reads
    np.testing.assert_array_equal(back.values, predictions.values)


def test_disk_full_is_reported_before_copying(session_file, predictions, trained, monkeypatch):
    digest = sha256(session_file)
    monkeypatch.setattr(nwb.shutil, "disk_usage", lambda _: SimpleNamespace(free=1000))
    with pytest.raises(OSError, match="Not enough disk space") as info:
        nwb.write_predictions_to_nwb(session_file, predictions, trained[0])
    assert info.value.errno == errno.ENOSPC
    assert_untouched(session_file, digest)


def test_disk_full_while_writing_is_reported(session_file, predictions, trained, monkeypatch):
    digest = sha256(session_file)

    def full(*args, **kwargs):
        raise OSError("Can't write data (file write failed: ... No space left on device)")

    monkeypatch.setattr(nwb, "_append", full)
    with pytest.raises(OSError, match="disk filled up") as info:
        nwb.write_predictions_to_nwb(session_file, predictions, trained[0])
    assert info.value.errno == errno.ENOSPC
    assert_untouched(session_file, digest)


@pytest.mark.parametrize("read_only", ["file", "folder", "both"])
def test_read_only_targets_are_refused(session_file, predictions, trained, read_only):
    digest = sha256(session_file)
    folder = session_file.parent
    if read_only in ("file", "both"):
        session_file.chmod(0o444)
    if read_only in ("folder", "both"):
        folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="read-only"):
            nwb.write_predictions_to_nwb(session_file, predictions, trained[0])
    finally:
        folder.chmod(0o755)
        session_file.chmod(0o644)
    assert_untouched(session_file, digest)


def test_open_h5py_handle_is_reported(session_file, predictions, trained):
    digest = sha256(session_file)
    with h5py.File(session_file, "r"):
        with pytest.raises(nwb.NWBFileInUseError, match="open elsewhere"):
            nwb.write_predictions_to_nwb(session_file, predictions, trained[0])
    assert_untouched(session_file, digest)
    nwb.write_predictions_to_nwb(session_file, predictions, trained[0])  # closed: fine


def test_open_pynwb_io_is_reported(session_file, predictions, trained):
    digest = sha256(session_file)
    with pynwb.NWBHDF5IO(str(session_file), "r") as io:
        io.read()
        with pytest.raises(nwb.NWBFileInUseError):
            nwb.write_predictions_to_nwb(session_file, predictions, trained[0])
    assert_untouched(session_file, digest)


def test_live_spikeinterface_sorting_is_reported(session_file, predictions, trained):
    import gc

    from spikeinterface.extractors import read_nwb_sorting

    digest = sha256(session_file)
    sorting = read_nwb_sorting(str(session_file), sampling_frequency=30000.0)
    with pytest.raises(nwb.NWBFileInUseError, match="del sorting"):
        nwb.write_predictions_to_nwb(session_file, predictions, trained[0])
    assert_untouched(session_file, digest)
    del sorting
    gc.collect()
    nwb.write_predictions_to_nwb(session_file, predictions, trained[0])


@contextlib.contextmanager
def held_open(path: Path):
    """A reader in another process holding ``path`` open with h5py, for as long as the block runs."""
    code = "import h5py, sys, time; f = h5py.File(sys.argv[1], 'r'); print('open', flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        yield
    finally:
        holder.kill()
        holder.wait()


def test_reader_in_another_process_is_reported(session_file, predictions, trained):
    digest = sha256(session_file)
    with held_open(session_file), pytest.raises(nwb.NWBFileInUseError):
        nwb.write_predictions_to_nwb(session_file, predictions, trained[0])
    assert_untouched(session_file, digest)


def test_replaced_file_keeps_its_permissions(session_file, predictions, trained):
    session_file.chmod(0o640)
    nwb.write_predictions_to_nwb(session_file, predictions, trained[0])
    assert stat.S_IMODE(session_file.stat().st_mode) == 0o640


# ---------------------------------------------------------------------------------------------
# reading what labs have


@pytest.mark.parametrize("layout", ["behavioral_time_series", "position", "processing", "acquisition"])
def test_load_nwb_session_layouts(session, tmp_path, layout):
    sorting, behavior = session
    path = build_nwb(
        tmp_path / f"{layout}.nwb", sorting, behavior, layout=layout, electrical_series=layout == "position"
    )
    loaded, target = nwb_read.load_nwb_session(path, behavior="velocity")
    np.testing.assert_array_equal(target.values, behavior.values)
    np.testing.assert_array_equal(target.timestamps, behavior.timestamps)
    assert [str(u) for u in loaded.unit_ids] == [str(u) for u in sorting.unit_ids]
    for unit_id in sorting.unit_ids[:3]:
        expected = sorting.get_unit_spike_train(unit_id, return_times=True)
        got = loaded.get_unit_spike_train(loaded.unit_ids[list(sorting.unit_ids).index(unit_id)], return_times=True)
        np.testing.assert_allclose(got, expected, atol=1.0 / loaded.sampling_frequency)
    # the file is closed again: predictions can go straight back in
    with nwb._locked(path.absolute(), exclusive=True):
        pass


def test_load_nwb_session_with_electrical_series_needs_no_time_base(session, trained, tmp_path):
    from spikeinterface.extractors import read_nwb_sorting

    sorting, behavior = session
    path = build_nwb(tmp_path / "ephys.nwb", sorting, behavior, electrical_series=True)
    with pytest.raises(ValueError):  # what plain SpikeInterface asks for
        read_nwb_sorting(str(path))
    loaded, target = nwb_read.load_nwb_session(path, behavior="velocity")
    assert loaded.sampling_frequency == 30000.0
    decoded = sip.decode_behavior(loaded, trained[0], timestamps=target.timestamps, progress_bar=False)
    reference = sip.decode_behavior(sorting, trained[0], timestamps=behavior.timestamps, progress_bar=False)
    np.testing.assert_allclose(decoded.values, reference.values, atol=1e-4)
    nwb.write_predictions_to_nwb(path, decoded, trained[0])
    assert nwb_read.read_predictions_from_nwb(path).name == "decoded_velocity"


def test_load_nwb_session_errors(session_file):
    with pytest.raises(ValueError, match="Pass behavior=.*velocity"):
        nwb_read.load_nwb_session(session_file)
    with pytest.raises(ValueError, match="No behavioural series named 'speed'"):
        nwb_read.load_nwb_session(session_file, behavior="speed")
    with pytest.raises(FileNotFoundError):
        nwb_read.load_nwb_session(session_file.with_name("missing.nwb"), behavior="velocity")


def test_load_nwb_session_real_file_uses_units_resolution():
    path = shared_file("jenkins_mc_maze_2trials.nwb")
    sorting, behavior = nwb_read.load_nwb_session(path, behavior="hand_velocity")
    assert sorting.sampling_frequency == 1000.0  # 1 / units.resolution
    assert sorting.get_num_units() == 182 and behavior.num_dimensions == 2
    assert os.access(path, os.R_OK)


def test_verification_catches_a_bad_write(session_file, predictions, trained, monkeypatch):
    digest = sha256(session_file)
    shifted = nwb._time_kwargs

    def off_by_one_second(timestamps):
        return shifted(timestamps + 1.0)

    monkeypatch.setattr(nwb, "_time_kwargs", off_by_one_second)
    with pytest.raises(nwb.NWBWriteError, match="different timestamps"):
        nwb.write_predictions_to_nwb(session_file, predictions, trained[0])
    assert_untouched(session_file, digest)


def test_schema_check_sees_a_missing_attribute(session_file, predictions, trained):
    nwb.write_predictions_to_nwb(session_file, predictions, trained[0])
    assert nwb._schema_errors(session_file, "decoded_velocity") == []
    with h5py.File(session_file, "r+") as f:
        del f["processing/behavior/decoded_velocity"].attrs["model_version"]
    errors = nwb._schema_errors(session_file, "decoded_velocity")
    assert any("model_version" in str(e) for e in errors)


def test_symlinked_file_is_updated_through_the_link(session_file, predictions, trained, tmp_path):
    link = tmp_path / "link.nwb"
    link.symlink_to(session_file)
    nwb.write_predictions_to_nwb(link, predictions, trained[0])
    assert link.is_symlink()
    assert nwb_read.read_predictions_from_nwb(session_file).name == "decoded_velocity"
