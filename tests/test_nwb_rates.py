"""Writing firing rates inferred by a model (InferredRates, ndx-poyo) into NWB files and reading
them back: column order kept in the units region, plain-pynwb readers, nwbinspector, the same
never-corrupting write as decoded behaviour, in place and in a companion file."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import pynwb
import pytest

import spikeinterface_poyo as sip
from spikeinterface_poyo.io import nwb_read, nwb_spec
from spikeinterface_poyo.io import nwb_write as nwb
from spikeinterface_poyo.io.models import CONFIG_FILE, WEIGHTS_FILE, model_sha256
from spikeinterface_poyo.simulation import simulate_regions

# ---------------------------------------------------------------------------------------------
# helpers and fixtures


class MtM:
    """Stands in for a trained MtM model: the writer only reads its class name and ``meta``."""

    meta = {"training": {"preset": "cpu", "sessions": ["day1", "day2"], "package_version": "1.2.3"}}


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def assert_untouched(path: Path, digest: str, names: list[str]) -> None:
    """Byte-identical, and nothing but ``names`` (no temporary copy) in its folder."""
    assert sha256(path) == digest
    assert listing(path.parent) == names


@pytest.fixture(scope="module")
def regions():
    return simulate_regions(duration=20, units_per_region=5)


@pytest.fixture
def session_file(regions, tmp_path):
    sorting, _ = regions
    t = np.arange(0.0, 20.0, 0.02)
    behavior = sip.Behavior(t, np.stack([np.sin(t), np.cos(t)], axis=1), name="velocity", unit="m/s")
    return nwb.write_session_nwb(tmp_path / "session.nwb", sorting, behavior, "Simulated regions")


@pytest.fixture
def rates(regions):
    """The true rates of the simulation in Hz at the bin centres, one column per unit."""
    sorting, truth = regions
    edges = truth["bin_edges"]
    centres = (edges[:-1] + edges[1:]) / 2
    values = truth["rates"] / np.diff(edges)[:, None]
    return sip.Behavior(centres, values, name="rates", unit="Hz", dimension_names=[str(u) for u in sorting.unit_ids])


@pytest.fixture
def model_dir(tmp_path_factory):
    """A saved-model folder as far as provenance goes: a config with meta, and weights to hash."""
    folder = tmp_path_factory.mktemp("model") / "mtm"
    folder.mkdir()
    (folder / CONFIG_FILE).write_text(json.dumps({"meta": MtM.meta, "model_class": "MtM"}))
    (folder / WEIGHTS_FILE).write_bytes(b"not really safetensors")
    return folder


def file_unit_ids(path: Path) -> list[str]:
    with h5py.File(path, "r") as f:
        return nwb_read._unit_ids_h5(f["units"])


def permuted(rates: sip.Behavior, order) -> sip.Behavior:
    return sip.Behavior(
        rates.timestamps,
        rates.values[:, order],
        unit="Hz",
        dimension_names=[rates.dimension_names[i] for i in order],
    )


# a reader that has never imported spikeinterface_poyo: plain pynwb with the cached spec (default
# load_namespaces), pynwb's validator and nwbinspector
PLAIN_READER = r"""
import json, sys
import numpy as np
from nwbinspector import Importance, inspect_nwbfile
from pynwb import NWBHDF5IO, validate

for path, name, out in json.loads(sys.argv[1]):
    with NWBHDF5IO(path, "r") as io:
        nwbfile = io.read()
        series = nwbfile.processing["ecephys"][name]
        data = series.data[:]
        if series.timestamps is not None:
            timestamps = series.timestamps[:]
        else:
            timestamps = series.starting_time + np.arange(len(data)) / series.rate
        table = series.units.table
        info = dict(
            type=series.neurodata_type,
            namespace=series.namespace,
            unit=series.unit,
            model_name=series.model_name,
            bin_size=series.bin_size,
            masking=series.masking,
            rows=series.units.data[:].tolist(),
            units_table=table.name,
            units_table_parent=table.parent.name,
            region_ids=[str(table.id[r]) for r in series.units.data[:]],
        )
    np.savez(out, data=data, timestamps=timestamps)
    info["errors"] = [str(e) for e in validate(path=path)]
    severe = {Importance.CRITICAL, Importance.BEST_PRACTICE_VIOLATION}
    info["inspector"] = [
        f"{m.importance.name} {m.check_function_name} at {m.location}: {m.message}"
        for m in inspect_nwbfile(nwbfile_path=path, skip_validate=True)  # validated just above
        if m.importance in severe
    ]
    info["ours_imported"] = any(m.startswith("spikeinterface_poyo") for m in sys.modules)
    print(json.dumps(info), flush=True)
"""


def read_plainly(jobs: list[tuple[Path, str]], workdir: Path) -> list[tuple[dict, np.ndarray, np.ndarray]]:
    outs = [workdir / f"plain{i}.npz" for i in range(len(jobs))]
    spec = json.dumps([(str(p), name, str(out)) for (p, name), out in zip(jobs, outs)])
    result = subprocess.run(
        [sys.executable, "-c", PLAIN_READER, spec], capture_output=True, text=True, timeout=300, cwd=workdir
    )
    assert result.returncode == 0, result.stderr
    infos = [json.loads(line) for line in result.stdout.strip().splitlines() if line.startswith("{")]
    return [(info, np.load(out)["data"], np.load(out)["timestamps"]) for info, out in zip(infos, outs)]


# ---------------------------------------------------------------------------------------------
# round trips


def test_namespace_has_the_type():
    assert issubclass(nwb_spec.InferredRates, pynwb.TimeSeries)
    assert pynwb.get_class("InferredRates", "ndx-poyo") is nwb_spec.InferredRates
    assert not issubclass(nwb_spec.InferredRates, nwb_spec.DecodedBehavior)


def test_round_trip_with_provenance(session_file, rates, model_dir):
    metrics = {"bits_per_spike": np.float64(0.25), "per_unit": np.arange(3.0)}

    written = nwb.write_rates_to_nwb(
        session_file, rates, MtM(), model_path=model_dir, metrics=metrics, bin_size=0.02, masking="neuron"
    )

    assert written == session_file.resolve()
    back, meta = nwb_read.read_rates_from_nwb(session_file, return_metadata=True)
    np.testing.assert_array_equal(back.values, rates.values)
    np.testing.assert_allclose(back.timestamps, rates.timestamps, rtol=0, atol=1e-9)
    assert back.name == "inferred_rates" and back.unit == "Hz"
    assert back.dimension_names == rates.dimension_names == file_unit_ids(session_file)
    assert meta["model_name"] == "MtM" and meta["model_version"] == "1.2.3"
    assert meta["model_sha256"] == model_sha256(model_dir)
    assert meta["preset"] == "cpu" and meta["training_sessions"] == ["day1", "day2"]
    assert meta["metrics"] == {"bits_per_spike": 0.25, "per_unit": [0.0, 1.0, 2.0]}
    assert meta["bin_size"] == 0.02 and meta["masking"] == "neuron"
    assert meta["unit_ids"] == rates.dimension_names and meta["nwb_path"] == written
    assert "MtM" in meta["description"] and "'neuron' masking" in meta["description"]
    with h5py.File(session_file, "r") as f:
        group = f["processing/ecephys/inferred_rates"]
        assert group.attrs["neurodata_type"] == "InferredRates" and group.attrs["namespace"] == "ndx-poyo"
        assert group["data"].attrs["unit"] == "Hz"
        assert "timestamps" not in group and "starting_time" in group  # regular bins: starting_time + rate
        assert "decoded_variable" not in group.attrs and "dimension_names" not in group.attrs
        assert f["processing/ecephys"].attrs["description"] == "Processed extracellular electrophysiology data."
        assert list(f["processing/behavior"]) == ["velocity"]  # the behaviour module is left as it was
    assert nwb._schema_errors(session_file, "inferred_rates", "ecephys") == []


@pytest.mark.parametrize("order", ["identity", "permuted"])
def test_units_region_keeps_column_order(session_file, rates, order):
    columns = np.arange(rates.num_dimensions)
    if order == "permuted":
        columns = np.random.default_rng(3).permutation(columns)
        assert not np.array_equal(columns, np.sort(columns))
    shuffled = permuted(rates, columns)
    nwb.write_rates_to_nwb(session_file, shuffled, MtM())
    ids = file_unit_ids(session_file)
    with pynwb.NWBHDF5IO(str(session_file), "r") as io:
        series = io.read().processing["ecephys"]["inferred_rates"]
        rows = series.units.data[:].tolist()
        assert series.units.table.name == "units"
    assert rows == [ids.index(u) for u in shuffled.dimension_names]
    back = nwb_read.read_rates_from_nwb(session_file)
    assert back.dimension_names == shuffled.dimension_names
    np.testing.assert_array_equal(back.values, rates.values[:, columns])


def test_unit_names_that_are_not_rows(rates, tmp_path):
    """A units table with a unit_name column and ids that are not row numbers, as SpikeInterface writes it."""
    from pynwb.file import Subject

    nwbfile = pynwb.NWBFile(
        session_description="units named by SpikeInterface",
        identifier="named-units",
        session_start_time=datetime(2026, 1, 1, tzinfo=timezone.utc),
        subject=Subject(subject_id="s", species="Mus musculus", sex="U", age="P90D"),
    )
    nwbfile.add_unit_column("unit_name", "SpikeInterface unit ids")
    names = [f"u{k:02d}" for k in range(6)]
    for k, unit_name in enumerate(names):
        nwbfile.add_unit(spike_times=[0.1 * (k + 1)], id=1000 - 7 * k, unit_name=unit_name)
    path = tmp_path / "named.nwb"
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    columns = ["u04", "u00", "u05"]
    few = sip.Behavior(rates.timestamps, rates.values[:, :3], unit="Hz")  # default names dim0... are not units
    with pytest.raises(ValueError, match="'x'.*dimension_names"):
        nwb.write_rates_to_nwb(path, few, MtM())

    nwb.write_rates_to_nwb(path, few, MtM(), unit_ids=columns)

    back, meta = nwb_read.read_rates_from_nwb(path, return_metadata=True)
    assert back.dimension_names == meta["unit_ids"] == columns
    with h5py.File(path, "r") as f:
        assert f["processing/ecephys/inferred_rates/units"][:].tolist() == [4, 0, 5]


def test_plain_pynwb_reads_and_nwbinspector_is_clean(session_file, rates, tmp_path):
    shuffled = permuted(rates, np.random.default_rng(1).permutation(rates.num_dimensions))
    nwb.write_rates_to_nwb(session_file, shuffled, MtM(), bin_size=0.02, masking="causal", storage="copy")
    companion = nwb.write_rates_to_nwb(session_file, rates, MtM(), name="in_companion", storage="companion")
    (copy, copy_data, copy_t), (comp, comp_data, comp_t) = read_plainly(
        [(session_file, "inferred_rates"), (companion, "in_companion")], tmp_path
    )
    for info in (copy, comp):
        assert not info["ours_imported"]
        assert info["type"] == "InferredRates" and info["namespace"] == "ndx-poyo" and info["unit"] == "Hz"
        assert info["model_name"] == "MtM"
        assert info["errors"] == [] and info["inspector"] == []
    np.testing.assert_array_equal(copy_data, shuffled.values)
    np.testing.assert_allclose(copy_t, shuffled.timestamps, rtol=0, atol=1e-9)
    assert copy["bin_size"] == 0.02 and copy["masking"] == "causal"
    assert copy["units_table"] == "units" and copy["region_ids"] == shuffled.dimension_names
    np.testing.assert_array_equal(comp_data, rates.values)
    assert comp["bin_size"] is None and comp["masking"] is None
    # in the companion the region points into its local copy of the source's ids, in processing/behavior
    assert (comp["units_table"], comp["units_table_parent"]) == ("source_units", "behavior")
    assert comp["region_ids"] == rates.dimension_names


# ---------------------------------------------------------------------------------------------
# refusals, all leaving the file byte-identical


def test_existing_name_is_refused_without_overwrite(session_file, rates):
    nwb.write_rates_to_nwb(session_file, rates, MtM())
    digest = sha256(session_file)
    with pytest.raises(ValueError, match="processing/ecephys/inferred_rates.*overwrite=True"):
        nwb.write_rates_to_nwb(session_file, rates, MtM())
    assert_untouched(session_file, digest, ["session.nwb"])


def test_overwrite_replaces_inferred_rates(session_file, rates):
    nwb.write_rates_to_nwb(session_file, rates, MtM(), masking="neuron")
    doubled = sip.Behavior(rates.timestamps, 2 * rates.values, unit="Hz", dimension_names=rates.dimension_names)
    nwb.write_rates_to_nwb(session_file, doubled, MtM(), overwrite=True)
    back, meta = nwb_read.read_rates_from_nwb(session_file, return_metadata=True)
    np.testing.assert_array_equal(back.values, doubled.values)
    assert meta["masking"] is None
    with h5py.File(session_file, "r") as f:
        assert list(f["processing/ecephys"]) == ["inferred_rates"]


def _add_to_ecephys(path: Path, kind: str, name: str) -> None:
    """Put another type's object of that name where the rates would go."""
    with pynwb.NWBHDF5IO(str(path), "a") as io:
        nwbfile = io.read()
        module = nwbfile.create_processing_module("ecephys", "Processed extracellular electrophysiology data.")
        data, common = np.ones((10, 2)), dict(name=name, starting_time=0.0, rate=10.0, description="other")
        if kind == "decoded":
            module.add(nwb_spec.DecodedBehavior(data=data, unit="a.u.", model_name="POYO", model_version="0", **common))
        else:
            module.add(pynwb.TimeSeries(data=data, unit="uV", **common))
        io.write(nwbfile)


@pytest.mark.parametrize("kind, found", [("decoded", "DecodedBehavior"), ("timeseries", "TimeSeries")])
def test_overwrite_never_replaces_another_type(session_file, rates, kind, found):
    _add_to_ecephys(session_file, kind, "inferred_rates")
    digest = sha256(session_file)
    with pytest.raises(ValueError, match=f"is a {found}, not an InferredRates"):
        nwb.write_rates_to_nwb(session_file, rates, MtM(), overwrite=True)
    assert_untouched(session_file, digest, ["session.nwb"])


def test_decoded_behaviour_of_the_same_name_is_not_in_the_way(session_file, rates):
    """Different modules and types: each reader finds its own."""
    velocity = sip.Behavior(rates.timestamps, rates.values[:, :2], name="velocity", unit="m/s")
    nwb.write_predictions_to_nwb(session_file, velocity, MtM(), name="same")
    nwb.write_rates_to_nwb(session_file, rates, MtM(), name="same")
    np.testing.assert_array_equal(nwb_read.read_predictions_from_nwb(session_file, "same").values, velocity.values)
    np.testing.assert_array_equal(nwb_read.read_rates_from_nwb(session_file, "same").values, rates.values)
    assert nwb_read.read_rates_from_nwb(session_file, None).name == "same"  # the only one


def _unknown_ids(rates):
    names = list(rates.dimension_names)
    names[2], names[5] = "999", "nope"
    return dict(rates=sip.Behavior(rates.timestamps, rates.values, unit="Hz", dimension_names=names))


@pytest.mark.parametrize(
    "change, error, match",
    [
        (_unknown_ids, ValueError, r"2 of the 15 unit_ids are not in the file's units table: '999', 'nope'.*"),
        (lambda r: dict(unit_ids=["0", "1"]), ValueError, "2 unit_ids for 15 columns"),
        (lambda r: dict(unit_ids=["0"] * 15), ValueError, r"more than once \(\['0'\]\)"),
        (lambda r: dict(rates=sip.Behavior(r.timestamps, r.values, unit="counts")), ValueError, "in Hz"),
        (lambda r: dict(rates=sip.Behavior(r.timestamps, -r.values, unit="Hz")), ValueError, "negative"),
        (lambda r: dict(bin_size=0.0), ValueError, "bin_size"),
        (lambda r: dict(model=None), ValueError, "model_path="),
        (lambda r: dict(rates=r.values), TypeError, "sip.Behavior"),
    ],
    ids=["unknown-ids", "too-few-ids", "repeated-ids", "not-hz", "negative", "bin-size", "no-model", "not-behavior"],
)
def test_bad_arguments_are_refused(session_file, rates, change, error, match):
    digest = sha256(session_file)
    kwargs = {"rates": rates, "model": MtM(), **change(rates)}
    with pytest.raises(error, match=match):
        nwb.write_rates_to_nwb(session_file, **kwargs)
    assert_untouched(session_file, digest, ["session.nwb"])


def test_unknown_ids_message_says_how_to_fix(session_file, rates):
    with pytest.raises(ValueError) as info:
        nwb.write_rates_to_nwb(session_file, **_unknown_ids(rates), model=MtM())
    message = str(info.value)
    assert "unit_name" in message and "dimension_names" in message and "unit_ids=" in message
    assert "Nothing was written" in message


# ---------------------------------------------------------------------------------------------
# companion files


def test_companion_storage(session_file, rates, model_dir):
    before = sha256(session_file)
    predictions = sip.Behavior(rates.timestamps, rates.values[:, :2], name="velocity", unit="m/s")
    nwb.write_predictions_to_nwb(session_file, predictions, MtM(), storage="companion")
    order = np.random.default_rng(2).permutation(rates.num_dimensions)
    shuffled = permuted(rates, order)

    written = nwb.write_rates_to_nwb(session_file, shuffled, MtM(), model_path=model_dir, bin_size=0.02)

    assert written == nwb_read.default_companion_path(session_file)  # "auto" keeps using the companion
    assert sha256(session_file) == before
    assert listing(session_file.parent) == ["session.nwb", "session.poyo.nwb"]
    with h5py.File(written, "r") as f:
        assert isinstance(f.get("units", getlink=True), h5py.ExternalLink)
        assert set(f["processing/behavior"]) == {"source_units", "decoded_velocity"}  # source_units stays there
        assert list(f["processing/ecephys"]) == ["inferred_rates"]
        source_ids = [v.decode() for v in f["processing/behavior/source_units/unit_name"][:]]
        rows = f["processing/ecephys/inferred_rates/units"][:].tolist()
    assert source_ids == file_unit_ids(session_file)
    assert rows == [source_ids.index(u) for u in shuffled.dimension_names]
    with pynwb.NWBHDF5IO(str(written), "r") as io:
        assert io.read().processing["ecephys"]["inferred_rates"].units.table.name == "source_units"
    # readers of the source find it in the companion
    back, meta = nwb_read.read_rates_from_nwb(session_file, return_metadata=True)
    np.testing.assert_array_equal(back.values, shuffled.values)
    assert back.dimension_names == shuffled.dimension_names and meta["nwb_path"] == written
    assert meta["model_sha256"] == model_sha256(model_dir)
    assert nwb_read.read_predictions_from_nwb(session_file).name == "decoded_velocity"
    # the same name in the source would make readers ambiguous
    with pytest.raises(ValueError, match="readers look in a file and its companion"):
        nwb.write_rates_to_nwb(session_file, rates, MtM(), storage="copy")
    assert sha256(session_file) == before


def test_rates_start_a_companion_and_are_found_at_another_path(session_file, rates, tmp_path):
    elsewhere = tmp_path / "processed" / "rates.nwb"
    elsewhere.parent.mkdir()
    written = nwb.write_rates_to_nwb(session_file, rates, MtM(), companion_path=elsewhere)
    assert written == elsewhere.resolve()
    with pytest.raises(ValueError, match="No series of inferred rates named 'inferred_rates'"):
        nwb_read.read_rates_from_nwb(session_file)
    back = nwb_read.read_rates_from_nwb(session_file, companion_path=elsewhere)
    np.testing.assert_array_equal(back.values, rates.values)
    with h5py.File(elsewhere, "r") as f:
        assert f["processing/behavior/source_units"].attrs["neurodata_type"] == "DynamicTable"


# ---------------------------------------------------------------------------------------------
# failures during the write


def _raise(*args, **kwargs):
    raise RuntimeError("injected failure")


@pytest.mark.parametrize(
    "storage, attribute",
    [
        ("copy", "_verify"),
        ("copy", "_build_rates"),
        ("companion", "_verify"),
        ("companion", "_build_rates"),
        ("companion", "_verify_companion"),  # only a companion write checks its link
    ],
)
def test_failed_write_leaves_everything_identical(session_file, rates, monkeypatch, storage, attribute):
    nwb.write_rates_to_nwb(session_file, rates, MtM(), storage=storage)  # something for overwrite to replace
    target = session_file if storage == "copy" else nwb_read.default_companion_path(session_file)
    names = listing(session_file.parent)
    digest, source = sha256(target), sha256(session_file)
    doubled = sip.Behavior(rates.timestamps, 2 * rates.values, unit="Hz", dimension_names=rates.dimension_names)
    monkeypatch.setattr(nwb, attribute, _raise)
    with pytest.raises(RuntimeError, match="injected"):
        nwb.write_rates_to_nwb(session_file, doubled, MtM(), overwrite=True, storage=storage)
    monkeypatch.undo()
    assert_untouched(target, digest, names)
    assert sha256(session_file) == source
    np.testing.assert_array_equal(nwb_read.read_rates_from_nwb(session_file).values, rates.values)


def test_failed_first_write_leaves_no_file_behind(session_file, rates, monkeypatch):
    digest = sha256(session_file)
    monkeypatch.setattr(nwb, "_verify", _raise)
    for storage in ("copy", "companion"):
        with pytest.raises(RuntimeError, match="injected"):
            nwb.write_rates_to_nwb(session_file, rates, MtM(), storage=storage)
        assert_untouched(session_file, digest, ["session.nwb"])


# ---------------------------------------------------------------------------------------------
# files written before InferredRates existed


def _as_written_by_0_1_0(path: Path) -> None:
    """Make the file's cached ndx-poyo spec the 0.1.0 one: the same, without InferredRates."""
    with h5py.File(path, "r+") as f:
        group = f["specifications/ndx-poyo"]
        (current,) = list(group)
        namespace = json.loads(group[current]["namespace"][()])
        namespace["namespaces"][0]["version"] = "0.1.0"
        extensions = json.loads(group[current]["ndx-poyo.extensions"][()])
        extensions["groups"] = [g for g in extensions["groups"] if g["neurodata_type_def"] != "InferredRates"]
        group.move(current, "0.1.0")
        del group["0.1.0/namespace"], group["0.1.0/ndx-poyo.extensions"]
        group["0.1.0/namespace"] = json.dumps(namespace)
        group["0.1.0/ndx-poyo.extensions"] = json.dumps(extensions)


def test_file_with_the_previous_spec_cached(session_file, rates, tmp_path):
    velocity = sip.Behavior(rates.timestamps, rates.values[:, :2], name="velocity", unit="m/s")
    nwb.write_predictions_to_nwb(session_file, velocity, MtM())
    _as_written_by_0_1_0(session_file)

    nwb.write_rates_to_nwb(session_file, rates, MtM())

    with h5py.File(session_file, "r") as f:
        versions = sorted(f["specifications/ndx-poyo"])
    assert versions[0] == "0.1.0" and len(versions) == 2  # both cached; readers take the newest
    [(info, data, _)] = read_plainly([(session_file, "inferred_rates")], tmp_path)
    assert info["type"] == "InferredRates" and info["errors"] == [] and info["inspector"] == []
    np.testing.assert_array_equal(data, rates.values)
    np.testing.assert_array_equal(nwb_read.read_predictions_from_nwb(session_file).values, velocity.values)
