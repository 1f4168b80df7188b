"""The ``poyo_decoding`` SortingAnalyzer extension, in the spirit of SpikeInterface's
``AnalyzerExtensionCommonTestSuite``: every format, reload in a fresh process, unit changes
and bad input."""

import importlib
import json
import re
import shutil
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import spikeinterface.core as si
from spikeinterface.core import NumpySorting, generate_recording

import spikeinterface_poyo as sip
from spikeinterface_poyo.spikeinterface import extension as analyzer_extension
from spikeinterface_poyo.spikeinterface.extension import ComputePoyoDecoding, compute_poyo_decoding

FS = 30000.0
DURATION = 40.0
FORMATS = ["memory", "binary_folder", "zarr"]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """A short simulated session, a tiny model trained on it and the model's saved folder."""
    sorting, behavior = sip.simulate_session(duration=DURATION, num_units=10, sampling_frequency=FS, seed=3)
    model = sip.train_decoder(sorting, behavior, preset="tiny", max_epochs=2, max_time_s=8, progress_bar=False)
    model_path = sip.save_model(model, tmp_path_factory.mktemp("models") / "decoder")
    return sorting, behavior, model, model_path


@pytest.fixture(scope="module")
def recording():
    # the analyzer needs a recording to be created; this one is generated lazily, never traced
    return generate_recording(num_channels=4, durations=[DURATION], sampling_frequency=FS, seed=0)


def make_analyzer(sorting, recording, format="memory", folder=None):
    return si.create_sorting_analyzer(sorting, recording, format=format, folder=folder, sparse=False)


def folder_for(tmp_path, format, name="analyzer"):
    if format == "memory":
        return None
    return tmp_path / (f"{name}.zarr" if format == "zarr" else name)


def assert_same_behavior(a, b):
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    np.testing.assert_array_equal(a.values, b.values)
    assert (a.name, a.unit, a.dimension_names) == (b.name, b.unit, b.dimension_names)


def test_extension_is_registered_with_its_function():
    from spikeinterface.core.sortinganalyzer import get_extension_class

    assert get_extension_class("poyo_decoding") is ComputePoyoDecoding
    assert compute_poyo_decoding.extension_name == "poyo_decoding"


@pytest.mark.parametrize("format", FORMATS)
def test_compute_matches_decode_behavior_and_stores_json_and_arrays(session, recording, tmp_path, format):
    sorting, behavior, model, model_path = session
    analyzer = make_analyzer(sorting, recording, format, folder_for(tmp_path, format))
    ext = analyzer.compute("poyo_decoding", model=model_path, timestamps=behavior.timestamps)

    expected = sip.decode_behavior(sorting, model, timestamps=behavior.timestamps, progress_bar=False)
    assert_same_behavior(ext.get_data(), expected)
    params = json.loads(json.dumps(ext.params))  # JSON only
    assert params["model_path"] == str(model_path.resolve())
    assert params["model_sha256"] == sip.io.models.model_sha256(model_path)
    assert params["timestamps_source"] == "given"
    assert all(isinstance(v, (np.ndarray, dict)) for v in ext.data.values())
    # job kwargs reach the decoder: two forward passes at a time, the same values
    parallel = analyzer.compute("poyo_decoding", model=model_path, timestamps=behavior.timestamps, n_jobs=2)
    np.testing.assert_allclose(parallel.get_data().values, expected.values, atol=1e-5)
    ext = analyzer.get_extension("poyo_decoding")

    if format == "binary_folder":
        files = {p.suffix for p in (analyzer.folder / "extensions" / "poyo_decoding").iterdir()}
        assert files <= {".json", ".npy"}  # no pickle, ever
    if format == "zarr":
        group = analyzer._get_zarr_root()["extensions"]["poyo_decoding"]
        assert not any("object" in group[name].attrs for name in group.keys())


def test_compute_function_and_default_timestamps(session, recording):
    sorting, _, model, model_path = session
    analyzer = make_analyzer(sorting, recording)
    decoded = compute_poyo_decoding(analyzer, model=model_path)
    expected = sip.decode_behavior(sorting, model, progress_bar=False)
    assert_same_behavior(decoded, expected)
    assert analyzer.get_extension("poyo_decoding").params["timestamps_source"] == "sorting span"


def test_decode_behavior_accepts_an_analyzer(session, recording):
    sorting, behavior, model, _ = session
    analyzer = make_analyzer(sorting, recording)
    from_analyzer = sip.decode_behavior(analyzer, model, timestamps=behavior.timestamps, progress_bar=False)
    from_sorting = sip.decode_behavior(sorting, model, timestamps=behavior.timestamps, progress_bar=False)
    assert_same_behavior(from_analyzer, from_sorting)


def test_saved_analyzers_read_back_unchanged_in_a_fresh_process(session, recording, tmp_path):
    """memory (saved with save_as), binary_folder and zarr: a new Python process reads the same data."""
    sorting, behavior, _, model_path = session
    in_memory = make_analyzer(sorting, recording)
    expected = in_memory.compute("poyo_decoding", model=model_path, timestamps=behavior.timestamps).get_data()
    folders = {
        "from_memory_binary": in_memory.save_as(format="binary_folder", folder=tmp_path / "from_memory"),
        "from_memory_zarr": in_memory.save_as(format="zarr", folder=tmp_path / "from_memory.zarr"),
    }
    for format in ("binary_folder", "zarr"):
        analyzer = make_analyzer(sorting, recording, format, folder_for(tmp_path, format))
        analyzer.compute("poyo_decoding", model=model_path, timestamps=behavior.timestamps)
        folders[format] = analyzer
    folders = {name: str(analyzer.folder) for name, analyzer in folders.items()}

    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        import spikeinterface.core as si
        import spikeinterface_poyo  # registers the extension
        out = {{}}
        for name, folder in json.loads({json.dumps(json.dumps(folders))}).items():
            decoded = si.load_sorting_analyzer(folder).get_extension("poyo_decoding").get_data()
            np.save(f"{tmp_path}/{{name}}.npy", np.column_stack([decoded.timestamps, decoded.values]))
            out[name] = [decoded.name, decoded.unit, decoded.dimension_names]
        print(json.dumps(out))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    described = json.loads(done.stdout.strip().splitlines()[-1])
    for name in folders:
        table = np.load(tmp_path / f"{name}.npy")
        np.testing.assert_array_equal(table[:, 0], expected.timestamps)
        np.testing.assert_array_equal(table[:, 1:], expected.values)
        assert described[name] == [expected.name, expected.unit, expected.dimension_names]

    # and in this process, back into memory
    reloaded = si.load_sorting_analyzer(folders["zarr"]).save_as(format="memory")
    assert_same_behavior(reloaded.get_extension("poyo_decoding").get_data(), expected)


def test_in_memory_model_needs_its_saved_folder(session, recording, tmp_path):
    sorting, _, model, model_path = session
    analyzer = make_analyzer(sorting, recording)
    with pytest.raises(ValueError, match="save_model first"):
        analyzer.compute("poyo_decoding", model=model)
    ext = analyzer.compute("poyo_decoding", model=model, model_path=model_path)
    assert ext.params["model_path"] == str(model_path.resolve())

    other = sip.train_decoder(
        sorting, session[1], preset="tiny", max_epochs=1, max_time_s=3, seed=1, progress_bar=False
    )
    with pytest.raises(ValueError, match="differs from the one saved"):
        analyzer.compute("poyo_decoding", model=other, model_path=model_path)


@pytest.mark.parametrize("format", FORMATS)
def test_select_units_decodes_again_from_the_subset(session, recording, tmp_path, format):
    sorting, behavior, model, model_path = session
    analyzer = make_analyzer(sorting, recording, format, folder_for(tmp_path, format))
    analyzer.compute("poyo_decoding", model=model_path, timestamps=behavior.timestamps)
    keep = sorting.unit_ids[:6]
    subset = analyzer.select_units(keep, format=format, folder=folder_for(tmp_path, format, "subset"))

    expected = sip.decode_behavior(
        sorting.select_units(keep), model, timestamps=behavior.timestamps, session_id="session", progress_bar=False
    )
    decoded = subset.get_extension("poyo_decoding").get_data()
    assert_same_behavior(decoded, expected)
    full = analyzer.get_extension("poyo_decoding").get_data()
    assert not np.array_equal(decoded.values, full.values)  # really decoded again, not copied
    if format != "memory":
        assert_same_behavior(
            si.load_sorting_analyzer(subset.folder).get_extension("poyo_decoding").get_data(), expected
        )


def test_merge_and_split_mark_the_result_stale(session, recording):
    sorting, behavior, _, model_path = session
    analyzer = make_analyzer(sorting, recording)
    analyzer.compute("poyo_decoding", model=model_path, timestamps=behavior.timestamps)

    with pytest.warns(UserWarning, match="marked stale"):
        merged = analyzer.merge_units([[0, 1]])
    with pytest.raises(RuntimeError, match="stale: units \\[\\[0, 1\\]\\] were merged"):
        merged.get_extension("poyo_decoding").get_data()

    n = sorting.count_num_spikes_per_unit()[2]
    with pytest.warns(UserWarning, match="marked stale"):
        split = analyzer.split_units({2: [np.arange(0, n, 2), np.arange(1, n, 2)]})
    with pytest.raises(RuntimeError, match="were split into"):
        split.get_extension("poyo_decoding").get_data()
    # recomputing with the model says the merged sorting is not what it was trained on, and which units it lacks
    with pytest.raises(ValueError, match="not one the model was trained on"):
        merged.compute("poyo_decoding", model=model_path)
    with pytest.raises(ValueError, match="not units of session 'session'"):
        merged.compute("poyo_decoding", model=model_path, session_id="session")


@pytest.mark.parametrize("format", ["binary_folder", "zarr"])
def test_moved_model_keeps_the_stored_result_and_recompute_names_the_path(session, recording, tmp_path, format):
    sorting, behavior, _, model_path = session
    moved = tmp_path / "decoder_copy"
    shutil.copytree(model_path, moved)
    analyzer = make_analyzer(sorting, recording, format, folder_for(tmp_path, format))
    expected = analyzer.compute("poyo_decoding", model=moved, timestamps=behavior.timestamps).get_data()
    shutil.rmtree(moved)

    loaded = si.load_sorting_analyzer(analyzer.folder)
    assert_same_behavior(loaded.get_extension("poyo_decoding").get_data(), expected)
    with pytest.raises(FileNotFoundError, match="needs the model"):
        loaded.select_units(sorting.unit_ids[:3])
    with pytest.raises(FileNotFoundError, match=re.escape(str(moved.resolve()))):
        loaded.compute("poyo_decoding", model=moved)
    # nothing was lost on disk
    again = si.load_sorting_analyzer(analyzer.folder)
    assert again.has_extension("poyo_decoding")
    assert_same_behavior(again.get_extension("poyo_decoding").get_data(), expected)


def test_replaced_model_is_refused_on_hard_recompute(session, recording, tmp_path):
    sorting, behavior, model, model_path = session
    swapped = sip.save_model(model, tmp_path / "decoder")
    analyzer = make_analyzer(sorting, recording)
    params = dict(analyzer.compute("poyo_decoding", model=swapped).params)
    other = sip.train_decoder(sorting, behavior, preset="tiny", max_epochs=1, max_time_s=3, seed=2, progress_bar=False)
    sip.save_model(other, swapped)
    with pytest.raises(ValueError, match="not the one this decoding was computed with"):
        analyzer.compute("poyo_decoding", **params)


def test_sorting_without_spikes_is_refused_and_nothing_is_written(session, recording, tmp_path):
    _, _, _, model_path = session
    empty = NumpySorting.from_samples_and_labels(
        [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)], FS, unit_ids=np.arange(10)
    )
    analyzer = make_analyzer(empty, recording, "binary_folder", tmp_path / "empty")
    with pytest.raises(ValueError, match="no spikes"):
        analyzer.compute("poyo_decoding", model=model_path)
    assert not analyzer.has_extension("poyo_decoding")
    assert not (tmp_path / "empty" / "extensions" / "poyo_decoding").exists()


def test_failed_recompute_keeps_the_previous_result(session, recording, tmp_path):
    sorting, behavior, _, model_path = session
    analyzer = make_analyzer(sorting, recording, "binary_folder", tmp_path / "analyzer")
    expected = analyzer.compute("poyo_decoding", model=model_path, timestamps=behavior.timestamps).get_data()
    with pytest.raises(FileNotFoundError, match="No saved model"):
        analyzer.compute("poyo_decoding", model=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="finite times"):
        analyzer.compute("poyo_decoding", model=model_path, timestamps=[0.0, np.nan])
    assert_same_behavior(si.load_sorting_analyzer(analyzer.folder).get_extension("poyo_decoding").get_data(), expected)


def test_unknown_units_and_sampling_frequency_mismatch(session, tmp_path):
    sorting, behavior, _, model_path = session
    # same spikes in seconds, stored at 20 kHz: decodes, with a warning naming both rates
    spikes = sorting.to_spike_vector()
    resampled = NumpySorting.from_samples_and_labels(
        [np.round(spikes["sample_index"] * 2 / 3).astype(np.int64)], [spikes["unit_index"]], 20000.0, sorting.unit_ids
    )
    rec20 = generate_recording(num_channels=4, durations=[DURATION], sampling_frequency=20000.0, seed=0)
    with pytest.warns(UserWarning, match="30000 Hz and this one is sampled at 20000 Hz"):
        make_analyzer(resampled, rec20).compute(
            "poyo_decoding", model=model_path, timestamps=behavior.timestamps, session_id="session"
        )

    renamed = sorting.rename_units([f"other{u}" for u in sorting.unit_ids])
    rec = generate_recording(num_channels=4, durations=[DURATION], sampling_frequency=FS, seed=0)
    with pytest.raises(ValueError, match="not one the model was trained on"):
        make_analyzer(renamed, rec).compute("poyo_decoding", model=model_path)
    with pytest.raises(ValueError, match="10 of the sorting's 10 units are not units of session 'session'"):
        make_analyzer(renamed, rec).compute("poyo_decoding", model=model_path, session_id="session")


def test_multi_segment_sorting_decodes_per_segment(session):
    sorting, behavior, model, model_path = session
    spikes = sorting.to_spike_vector()
    half = int(DURATION / 2 * FS)
    first = spikes["sample_index"] < half
    two_segments = NumpySorting.from_samples_and_labels(
        [spikes["sample_index"][first], spikes["sample_index"][~first] - half],
        [spikes["unit_index"][first], spikes["unit_index"][~first]],
        FS,
        unit_ids=sorting.unit_ids,
    )
    decoded = sip.decode_behavior(two_segments, model, session_id="session", progress_bar=False)
    assert isinstance(decoded, list) and len(decoded) == 2
    assert all(d.values.shape[1] == behavior.num_dimensions for d in decoded)

    recording = generate_recording(num_channels=4, durations=[DURATION / 2] * 2, sampling_frequency=FS, seed=0)
    analyzer = make_analyzer(two_segments, recording)
    times = [np.arange(0, 10, 0.02), np.arange(5, 15, 0.02)]
    stored = analyzer.compute("poyo_decoding", model=model_path, timestamps=times, session_id="session").get_data()
    assert [len(d) for d in stored] == [len(t) for t in times]
    one = analyzer.get_extension("poyo_decoding").get_data(segment_index=1)
    np.testing.assert_array_equal(one.timestamps, times[1])
    single = NumpySorting.from_samples_and_labels(
        [spikes["sample_index"][~first] - half], [spikes["unit_index"][~first]], FS, unit_ids=sorting.unit_ids
    )
    expected = sip.decode_behavior(single, model, timestamps=times[1], session_id="session", progress_bar=False)
    np.testing.assert_allclose(one.values, expected.values, rtol=1e-5, atol=1e-6)  # batching differs


def test_reloading_the_module_registers_again(session, recording):
    from spikeinterface.core.sortinganalyzer import _possible_extensions, get_extension_class

    _, behavior, _, model_path = session
    reloaded = importlib.reload(analyzer_extension)  # what a notebook's autoreload does
    try:
        assert get_extension_class("poyo_decoding") is reloaded.ComputePoyoDecoding is not ComputePoyoDecoding
        assert sum(ext.extension_name == "poyo_decoding" for ext in _possible_extensions) == 1
        analyzer = make_analyzer(session[0], recording)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            analyzer.compute("poyo_decoding", model=model_path, timestamps=behavior.timestamps[:100])
    finally:  # put back the class the package exports
        reloaded.ComputePoyoDecoding, reloaded.compute_poyo_decoding = ComputePoyoDecoding, compute_poyo_decoding
        reloaded._register(ComputePoyoDecoding)
    assert get_extension_class("poyo_decoding") is ComputePoyoDecoding
