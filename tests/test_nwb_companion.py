"""Companion NWB files for sources too big to copy, choosing between the two write modes, and
nwbinspector cleanliness of every file the package writes."""

from __future__ import annotations

import errno
import os
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pynwb
import pytest
import test_nwb
from conftest import shared_file
from test_nwb import REAL_FILES, build_nwb, held_open, read_plainly, sha256

import spikeinterface_poyo as sip
from spikeinterface_poyo.io import atomic, nwb_read
from spikeinterface_poyo.io import nwb_write as nwb
from spikeinterface_poyo.io.models import model_sha256

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# the fixtures of test_nwb.py, used here by name
session, trained, session_file, predictions = (
    test_nwb.session,
    test_nwb.trained,
    test_nwb.session_file,
    test_nwb.predictions,
)


def fingerprint(path: Path) -> tuple[str, int]:
    """Bytes and mtime: a file only ever read keeps both."""
    return sha256(path), path.stat().st_mtime_ns


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def companion_of(path: Path) -> Path:
    return path.with_name(path.stem + ".poyo.nwb")


# ---------------------------------------------------------------------------------------------
# writing a companion


def test_companion_leaves_source_identical_and_opens_plainly(session_file, predictions, trained, tmp_path):
    model, model_dir = trained
    before = fingerprint(session_file)
    metrics = {"r2": np.array([0.5, 0.25]), "mean": np.float64(0.375)}

    written = nwb.write_predictions_to_nwb(
        session_file, predictions, model, model_path=model_dir, metrics=metrics, unit_ids=[4, 2], storage="companion"
    )

    assert written == companion_of(session_file) == nwb_read.default_companion_path(session_file)
    assert fingerprint(session_file) == before
    assert listing(tmp_path) == ["session.nwb", "session.poyo.nwb"]
    with h5py.File(written, "r") as f:
        link = f.get("units", getlink=True)
        assert isinstance(link, h5py.ExternalLink) and (link.filename, link.path) == ("session.nwb", "/units")
    [(info, data, timestamps)] = read_plainly([(written, "decoded_velocity")], tmp_path)
    assert not info["ours_imported"]
    assert info["type"] == "DecodedBehavior" and info["namespace"] == "ndx-poyo"
    assert info["errors"] == [] and info["inspector"] == []
    np.testing.assert_array_equal(data, predictions.values)
    np.testing.assert_allclose(timestamps, predictions.timestamps, rtol=0, atol=1e-9)
    assert info["model_sha256"] == model_sha256(model_dir) and info["metrics"] == {"r2": [0.5, 0.25], "mean": 0.375}
    # the units resolve through the link; the region indexes the local copy of their ids, row for row
    with h5py.File(session_file, "r") as f:
        source_ids = f["units/id"][:].tolist()
    assert info["file_units"] == source_ids
    assert info["units_table"] == "source_units" and info["rows"] == [source_ids.index(2), source_ids.index(4)]
    with pynwb.NWBHDF5IO(str(session_file), "r") as io:
        source = io.read()
        assert info["identifier"] != source.identifier
        assert info["session_start_time"] == source.session_start_time.isoformat()
    with pynwb.NWBHDF5IO(str(written), "r") as io:
        description = io.read().session_description
    assert "Companion file of session.nwb" in description and "external link" in description
    # readers of the source find it, with the same metadata as a full copy gives
    back, meta = nwb_read.read_predictions_from_nwb(session_file, return_metadata=True)
    np.testing.assert_array_equal(back.values, predictions.values)
    assert meta["unit_ids"] == ["2", "4"] and meta["nwb_path"] == written
    assert fingerprint(session_file) == before


@pytest.mark.parametrize("unit_ids", [None, [5, 0, 7]], ids=["model-units", "explicit"])
def test_unit_ids_read_the_same_in_both_modes(session_file, predictions, trained, tmp_path, unit_ids):
    copy = nwb.write_predictions_to_nwb(
        session_file, predictions, trained[0], unit_ids=unit_ids, output_path=tmp_path / "copy.nwb"
    )
    companion = nwb.write_predictions_to_nwb(
        session_file, predictions, trained[0], unit_ids=unit_ids, storage="companion"
    )
    _, in_copy = nwb_read.read_predictions_from_nwb(copy, return_metadata=True)
    _, in_companion = nwb_read.read_predictions_from_nwb(session_file, return_metadata=True)
    assert in_companion["nwb_path"] == companion
    assert in_companion["unit_ids"] == in_copy["unit_ids"] is not None
    assert {k: v for k, v in in_companion.items() if k != "nwb_path"} == {
        k: v for k, v in in_copy.items() if k != "nwb_path"
    }


def test_read_only_source_elsewhere_and_the_pair_moves_together(session_file, predictions, trained, tmp_path):
    raw, processed = tmp_path / "raw", tmp_path / "processed"
    raw.mkdir()
    processed.mkdir()
    source = session_file.rename(raw / "session.nwb")
    source.chmod(0o444)
    raw.chmod(0o555)
    try:
        before = fingerprint(source)
        written = nwb.write_predictions_to_nwb(
            source, predictions, trained[0], companion_path=processed / "decoded.nwb"
        )  # companion_path= alone chooses the companion
        assert fingerprint(source) == before and listing(raw) == ["session.nwb"]
        with h5py.File(written, "r") as f:
            assert f.get("units", getlink=True).filename == os.path.join("..", "raw", "session.nwb")
    finally:
        raw.chmod(0o755)
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(raw, moved / "raw")
    shutil.move(processed, moved / "processed")
    with pynwb.NWBHDF5IO(str(moved / "processed" / "decoded.nwb"), "r") as io:
        assert len(io.read().units) == 12
    back, meta = nwb_read.read_predictions_from_nwb(
        moved / "raw" / "session.nwb", companion_path=moved / "processed" / "decoded.nwb", return_metadata=True
    )
    np.testing.assert_array_equal(back.values, predictions.values)
    assert len(meta["unit_ids"]) == 12


def test_source_held_open_by_a_reader_does_not_block_a_companion(session_file, predictions, trained):
    with held_open(session_file):
        with pytest.raises(nwb.NWBFileInUseError):  # a copy would replace it under the reader's feet
            nwb.write_predictions_to_nwb(session_file, predictions, trained[0], storage="copy")
        # the companion only reads the source (HDF5 would refuse a second process opening it for writing)
        written = nwb.write_predictions_to_nwb(session_file, predictions, trained[0], storage="companion")
    assert nwb_read.read_predictions_from_nwb(written).name == "decoded_velocity"


def test_open_companion_is_reported(session_file, predictions, trained):
    companion = nwb.write_predictions_to_nwb(session_file, predictions, trained[0], storage="companion")
    digest = sha256(companion)
    with h5py.File(companion, "r"):
        with pytest.raises(nwb.NWBFileInUseError, match="open elsewhere"):
            nwb.write_predictions_to_nwb(session_file, predictions, trained[0], name="second")
    assert sha256(companion) == digest


@pytest.fixture(scope="module")
def real_companions(trained, tmp_path_factory):
    """A companion, in a temporary folder, for each real file: the read-only originals are the sources."""
    model, model_dir = trained
    folder = tmp_path_factory.mktemp("real_companions")
    cases = {}
    for filename in REAL_FILES:
        source = shared_file(filename)
        before = fingerprint(source)
        with h5py.File(source, "r") as f:
            ids = nwb_read._unit_ids_h5(f["units"])
            file_ids = f["units/id"][:].tolist()
        t = np.arange(0.0, 10.0, 0.02)
        predictions = sip.Behavior(t, np.stack([np.sin(t), np.cos(t)], axis=1), name="velocity", unit="a.u.")
        companion = folder / f"{source.stem}.poyo.nwb"
        nwb.write_predictions_to_nwb(
            source, predictions, model, model_path=model_dir, unit_ids=ids[:3], companion_path=companion
        )
        back, meta = nwb_read.read_predictions_from_nwb(source, companion_path=companion, return_metadata=True)
        cases[filename] = dict(
            source=source, before=before, companion=companion, ids=ids, file_ids=file_ids, back=back, meta=meta
        )
    plain = read_plainly([(c["companion"], "decoded_velocity") for c in cases.values()], folder)
    return {filename: {**case, "plain": result} for (filename, case), result in zip(cases.items(), plain)}


@pytest.mark.parametrize("filename", REAL_FILES)
def test_companion_of_real_read_only_files(filename, real_companions):
    case = real_companions[filename]
    info, data, _ = case["plain"]
    assert fingerprint(case["source"]) == case["before"]
    assert not info["ours_imported"] and info["errors"] == [] and info["inspector"] == []
    assert info["file_units"] == case["file_ids"]
    assert info["rows"] == [0, 1, 2] and info["units_table"] == "source_units"
    np.testing.assert_array_equal(data, case["back"].values)
    assert case["meta"]["unit_ids"] == case["ids"][:3]


# ---------------------------------------------------------------------------------------------
# choosing the mode


def test_auto_writes_small_files_in_place_and_big_ones_into_a_companion(
    session_file, predictions, trained, monkeypatch
):
    model = trained[0]
    assert nwb.write_predictions_to_nwb(session_file, predictions, model, name="small") == session_file
    assert listing(session_file.parent) == ["session.nwb"]

    monkeypatch.setattr(nwb, "COMPANION_THRESHOLD", 0)
    before = fingerprint(session_file)
    assert nwb.write_predictions_to_nwb(session_file, predictions, model, name="big") == companion_of(session_file)
    assert fingerprint(session_file) == before
    monkeypatch.undo()
    # once a companion exists, auto keeps a session's predictions together in it
    assert nwb.write_predictions_to_nwb(session_file, predictions, model, name="later") == companion_of(session_file)
    assert fingerprint(session_file) == before
    assert nwb_read._decoded_names(session_file) == ["small"]
    assert sorted(nwb_read._decoded_names(companion_of(session_file))) == ["big", "later"]


def test_threshold_parameter(session_file, predictions, trained):
    size = session_file.stat().st_size
    written = nwb.write_predictions_to_nwb(session_file, predictions, trained[0], companion_threshold=size)
    assert written == session_file  # not above it
    written = nwb.write_predictions_to_nwb(
        session_file, predictions, trained[0], name="b", companion_threshold=size - 1
    )
    assert written == companion_of(session_file)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(storage="sideways"), "storage must be one of"),
        (dict(storage="copy", companion_path="x.nwb"), "goes with storage='companion'"),
        (dict(storage="companion", output_path="out.nwb"), "does not go with a companion"),
        (dict(companion_path="x.nwb", output_path="out.nwb"), "does not go with a companion"),
    ],
)
def test_contradicting_arguments(session_file, predictions, trained, kwargs, match):
    digest = sha256(session_file)
    with pytest.raises(ValueError, match=match):
        nwb.write_predictions_to_nwb(session_file, predictions, trained[0], **kwargs)
    assert sha256(session_file) == digest and listing(session_file.parent) == ["session.nwb"]


def test_writing_through_the_companion_itself(session_file, predictions, trained):
    companion = nwb.write_predictions_to_nwb(session_file, predictions, trained[0], storage="companion")
    before = fingerprint(session_file)
    assert nwb.write_predictions_to_nwb(companion, predictions, trained[0], name="second") == companion
    assert sorted(nwb_read._decoded_names(companion)) == ["decoded_velocity", "second"]
    assert fingerprint(session_file) == before
    with pytest.raises(ValueError, match="is a companion file"):
        nwb.write_predictions_to_nwb(companion, predictions, trained[0], name="third", storage="copy")


def test_a_file_that_is_not_the_companion_is_refused(session, session_file, predictions, trained, tmp_path):
    sorting, behavior = session
    other = build_nwb(tmp_path / "other.nwb", sorting, behavior)
    digest = sha256(other)
    with pytest.raises(ValueError, match="not the companion file of session.nwb"):
        nwb.write_predictions_to_nwb(session_file, predictions, trained[0], companion_path=other)
    assert sha256(other) == digest
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    companion = nwb.write_predictions_to_nwb(
        other, predictions, trained[0], companion_path=elsewhere / "c.nwb", storage="companion"
    )
    with pytest.raises(ValueError, match="not the companion file of session.nwb"):
        nwb.write_predictions_to_nwb(session_file, predictions, trained[0], name="x", companion_path=companion)


def test_changed_source_units_are_refused(session, session_file, predictions, trained):
    sorting, behavior = session
    companion = nwb.write_predictions_to_nwb(session_file, predictions, trained[0], storage="companion")
    digest = sha256(companion)
    fewer = sorting.select_units(sorting.unit_ids[:6])
    build_nwb(session_file, fewer, behavior)  # re-sorted: a different units table
    with pytest.raises(ValueError, match="units table of session.nwb changed"):
        nwb.write_predictions_to_nwb(session_file, predictions, trained[0], name="again")
    assert sha256(companion) == digest


def test_companion_reads_without_its_source(session_file, predictions, trained):
    companion = nwb.write_predictions_to_nwb(session_file, predictions, trained[0], storage="companion")
    session_file.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hdmf warns of the broken link
        back, meta = nwb_read.read_predictions_from_nwb(companion, return_metadata=True)
    np.testing.assert_array_equal(back.values, predictions.values)
    assert meta["unit_ids"] == [str(u) for u in range(12)]  # kept in the companion itself


# ---------------------------------------------------------------------------------------------
# names and overwrite, across the pair


def test_companion_overwrite_semantics(session_file, predictions, trained):
    model = trained[0]
    companion = nwb.write_predictions_to_nwb(session_file, predictions, model, storage="companion")
    digest = sha256(companion)
    with pytest.raises(ValueError, match="overwrite=True"):
        nwb.write_predictions_to_nwb(session_file, predictions, model)
    with pytest.raises(ValueError, match="not a DecodedBehavior"):
        nwb.write_predictions_to_nwb(session_file, predictions, model, name="source_units", overwrite=True)
    assert sha256(companion) == digest and listing(session_file.parent) == ["session.nwb", "session.poyo.nwb"]

    doubled = sip.Behavior(predictions.timestamps, predictions.values * 2, name="velocity")
    before = fingerprint(session_file)
    nwb.write_predictions_to_nwb(session_file, doubled, model, overwrite=True, metrics={"mean": 0.1})
    back, meta = nwb_read.read_predictions_from_nwb(session_file, return_metadata=True)
    np.testing.assert_array_equal(back.values, doubled.values)
    assert meta["metrics"] == {"mean": 0.1} and len(meta["unit_ids"]) == 12
    assert fingerprint(session_file) == before
    assert pynwb.validate(path=str(companion)) == []


def test_a_name_is_held_by_one_file_of_the_pair(session_file, predictions, trained):
    model = trained[0]
    nwb.write_predictions_to_nwb(session_file, predictions, model, storage="copy")
    with pytest.raises(ValueError, match="readers look in a file and its companion"):
        nwb.write_predictions_to_nwb(session_file, predictions, model, storage="companion", overwrite=True)
    assert listing(session_file.parent) == ["session.nwb"]
    nwb.write_predictions_to_nwb(session_file, predictions, model, name="other", storage="companion")
    digest = sha256(session_file)
    with pytest.raises(ValueError, match="readers look in a file and its companion"):
        nwb.write_predictions_to_nwb(session_file, predictions, model, name="other", storage="copy")
    assert sha256(session_file) == digest


# ---------------------------------------------------------------------------------------------
# never half-written


def _raise(*args, **kwargs):
    raise RuntimeError("injected failure")


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def _full(*args, **kwargs):
    raise OSError("Can't write data (file write failed: ... No space left on device)")


FAILURES = [
    (nwb, "_build", _raise, RuntimeError),
    (nwb, "_append", _full, OSError),
    (nwb, "_verify", _raise, RuntimeError),
    (nwb, "_verify_companion", _raise, RuntimeError),
    (atomic, "fsync_file", _raise, RuntimeError),
    (nwb.os, "replace", _raise, RuntimeError),
    (nwb, "_append", _interrupt, KeyboardInterrupt),
]
FAILURE_IDS = ["build", "disk-full", "verify", "verify-link", "fsync", "replace", "ctrl-c"]


@pytest.mark.parametrize(
    "target, attribute, replacement, error",
    [(nwb, "_new_companion", _raise, RuntimeError), *FAILURES],
    ids=["new", *FAILURE_IDS],
)
def test_failed_first_write_leaves_no_companion(
    session_file, predictions, trained, monkeypatch, target, attribute, replacement, error
):
    before = fingerprint(session_file)
    monkeypatch.setattr(target, attribute, replacement)
    with pytest.raises(error) as info:
        nwb.write_predictions_to_nwb(session_file, predictions, trained[0], storage="companion")
    monkeypatch.undo()
    if replacement is _full:
        assert info.value.errno == errno.ENOSPC
    assert listing(session_file.parent) == ["session.nwb"]  # no companion, no temporary file
    assert fingerprint(session_file) == before


@pytest.mark.parametrize(
    "target, attribute, replacement, error",
    [(nwb, "_copy", _raise, RuntimeError), (nwb, "_remove_object", _raise, RuntimeError), *FAILURES],
    ids=["copy", "remove-old", *FAILURE_IDS],
)
def test_failed_second_write_leaves_the_companion_identical(
    session_file, predictions, trained, monkeypatch, target, attribute, replacement, error
):
    companion = nwb.write_predictions_to_nwb(session_file, predictions, trained[0], storage="companion")
    digest, before = sha256(companion), fingerprint(session_file)
    monkeypatch.setattr(target, attribute, replacement)
    with pytest.raises(error) as info:
        nwb.write_predictions_to_nwb(session_file, predictions, trained[0], overwrite=True)
    monkeypatch.undo()
    if replacement is _full:
        assert info.value.errno == errno.ENOSPC
    assert listing(session_file.parent) == ["session.nwb", "session.poyo.nwb"]
    assert sha256(companion) == digest and fingerprint(session_file) == before
    np.testing.assert_array_equal(nwb_read.read_predictions_from_nwb(session_file).values, predictions.values)


def test_read_only_companion_and_folder_are_refused(session_file, predictions, trained, tmp_path):
    companion = nwb.write_predictions_to_nwb(session_file, predictions, trained[0], storage="companion")
    companion.chmod(0o444)
    try:
        with pytest.raises(PermissionError, match="read-only.*companion_path="):
            nwb.write_predictions_to_nwb(session_file, predictions, trained[0], name="second")
    finally:
        companion.chmod(0o644)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="folder .* is read-only"):
            nwb.write_predictions_to_nwb(session_file, predictions, trained[0], companion_path=locked / "c.nwb")
    finally:
        locked.chmod(0o755)
    assert listing(locked) == []


# ---------------------------------------------------------------------------------------------
# readers find predictions in either place


def test_reader_looks_in_both_places_and_says_where(session_file, predictions, trained, tmp_path):
    model = trained[0]
    with pytest.raises(
        ValueError, match=r"holds 0 decoded series \[\] \(and there is no companion file at .*session\.poyo\.nwb\)"
    ):
        nwb_read.read_predictions_from_nwb(session_file)
    nwb.write_predictions_to_nwb(session_file, predictions, model, name="in_file", storage="copy")
    nwb.write_predictions_to_nwb(session_file, predictions, model, name="in_companion", storage="companion")
    with pytest.raises(ValueError, match=r"and its companion session\.poyo\.nwb hold 2 decoded series.*pass name="):
        nwb_read.read_predictions_from_nwb(session_file)
    with pytest.raises(ValueError, match=r"No decoded series named 'nope' in session\.nwb and its companion"):
        nwb_read.read_predictions_from_nwb(session_file, "nope")
    _, meta = nwb_read.read_predictions_from_nwb(session_file, "in_file", return_metadata=True)
    assert meta["nwb_path"] == session_file
    _, meta = nwb_read.read_predictions_from_nwb(session_file, "in_companion", return_metadata=True)
    assert meta["nwb_path"] == companion_of(session_file)
    with pytest.raises(FileNotFoundError, match="No companion file"):
        nwb_read.read_predictions_from_nwb(session_file, companion_path=tmp_path / "missing.nwb")
    # a companion elsewhere is found with companion_path=
    moved = shutil.move(companion_of(session_file), tmp_path / "decoded.nwb")
    assert nwb_read.read_predictions_from_nwb(session_file, "in_companion", companion_path=moved).name == "in_companion"
    with pytest.raises(ValueError, match="No decoded series named 'in_companion'"):
        nwb_read.read_predictions_from_nwb(session_file, "in_companion")


# ---------------------------------------------------------------------------------------------
# nwbinspector


def test_written_files_pass_nwbinspector(tmp_path):
    """The demo's session file, the same file after a write in place, and a companion file."""
    from nwbinspector import Importance, inspect_nwbfile

    sorting, behavior = sip.simulate_session(duration=60, num_units=20, seed=0)
    path = nwb.write_session_nwb(tmp_path / "session.nwb", sorting, behavior, "Simulated cosine-tuned units")
    sorting, behavior = sip.load_nwb_session(path, behavior="velocity")
    model = sip.train_decoder(sorting, behavior, preset="tiny", max_epochs=1, max_time_s=5, progress_bar=False)
    decoded = sip.decode_behavior(sorting, model, timestamps=behavior.timestamps, progress_bar=False)
    severe = {Importance.CRITICAL, Importance.BEST_PRACTICE_VIOLATION}

    def problems(file: Path) -> list[str]:
        return [
            f"{m.importance.name} {m.check_function_name} at {m.location}: {m.message}"
            for m in inspect_nwbfile(nwbfile_path=str(file))
            if m.importance in severe
        ]

    found = {"session": problems(path)}
    nwb.write_predictions_to_nwb(path, decoded, model, storage="copy")
    found["copy"] = problems(path)
    companion = nwb.write_predictions_to_nwb(path, decoded, model, name="decoded_again", storage="companion")
    found["companion"] = problems(companion)
    assert found == {"session": [], "copy": [], "companion": []}, "\n".join(
        f"{kind}: {message}" for kind, messages in found.items() for message in messages
    )
