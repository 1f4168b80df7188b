"""SimSort as a SpikeInterface sorter: ``run_sorter("simsort", recording)`` after
``import spikeinterface_poyo`` (the import adds it to SpikeInterface's sorter list).

Nothing heavy is imported here: torch and the models load when a sort runs.
"""

from __future__ import annotations

import sys

import numpy as np
from spikeinterface.sorters.internal.si_based import ComponentsBasedSorter

from ..._version import __version__
from .pipeline import DEFAULT_PARAMS

#: Sampling rates further than this fraction outside the trained range are refused.
RATE_TOLERANCE = 0.02


def tetrode_groups(recording) -> list[np.ndarray]:
    """The channel ids of each tetrode: by the recording's ``group`` property when it has one,
    else consecutive quadruples; each group must hold exactly 4 channels."""
    ids = np.asarray(recording.channel_ids)
    group = recording.get_property("group")
    if group is not None and len(np.unique(group)) > 1:
        groups = [ids[group == g] for g in np.unique(group)]
    elif len(ids) % 4 == 0:
        groups = [ids[i : i + 4] for i in range(0, len(ids), 4)]
    else:
        raise ValueError(
            f"The recording's {len(ids)} channels do not divide into tetrodes of 4, and it has no 'group' property "
            "saying which channels form each tetrode. Set one (recording.set_channel_groups(...)) or select a "
            "multiple of 4 channels."
        )
    wrong = {str(g[0]): len(g) for g in groups if len(g) != 4}
    if wrong:
        raise ValueError(
            f"SimSort sorts tetrodes of 4 channels; channel groups of other sizes (first channel: size): {wrong}. "
            "Regroup the channels (recording.set_channel_groups) or sort those groups with another sorter."
        )
    return groups


def check_sampling_frequency(fs: float, trained: list[float]) -> None:
    """Refuse a rate outside the range the detector and embedder were trained on."""
    low, high = min(trained) * (1 - RATE_TOLERANCE), max(trained) * (1 + RATE_TOLERANCE)
    if not low <= fs <= high:
        raise ValueError(
            f"The recording is sampled at {fs:g} Hz; SimSort's models were trained on {min(trained):g}-"
            f"{max(trained):g} Hz. Resample it first: spikeinterface.preprocessing.resample(recording, 30000)."
        )


class SimSortSorter(ComponentsBasedSorter):
    """SimSort (Zhang et al., NeurIPS 2025): a spike detector and a waveform embedder learned
    from simulated tetrodes, then dimensionality reduction and MeanShift clustering.

    Each tetrode (the ``group`` property, else consecutive quadruples) is band-passed,
    z-scored and whitened, detected, embedded and clustered on its own; units are numbered
    across tetrodes and keep their tetrode in the ``group`` property.
    """

    sorter_name = "simsort"
    handle_multi_segment = False

    _default_params = {**DEFAULT_PARAMS, "weights": None, "device": None, "job_kwargs": {}}

    _params_description = {
        "detection": "'learned' (the detector's per-sample probability) or 'threshold' (robust threshold crossings)",
        "probability_threshold": "Spike probability above which samples form an event (learned detection); None: "
        "the weights' choice on validation simulations",
        "detect_threshold": "Threshold in robust standard deviations (threshold detection)",
        "exclude_sweep_ms": "Smallest time between two events on a tetrode, ms",
        "denoise_rank": "Principal components kept when denoising snippets",
        "reducer": "'pca' or 'umap' (needs umap-learn): embeddings to a few dimensions",
        "n_components": "Dimensions kept by the reducer",
        "clusterer": "'mean_shift' (finds the number of units), 'kmeans' or 'gmm' (need n_clusters)",
        "n_clusters": "Units per tetrode for kmeans and gmm",
        "bandwidth_quantile": "MeanShift bandwidth, as a quantile of pairwise distances; None: the weights' choice",
        "min_cluster_size": "Clusters with fewer spikes are dropped as noise",
        "seed": "Seed of the reducer and the clusterer",
        "weights": "Folder of a detector and embedder saved with save_simsort (None: the shipped pair)",
        "device": "torch device ('cpu', 'cuda'); None: CUDA when available",
        "job_kwargs": "SpikeInterface job kwargs (n_jobs, when given, sets torch's threads)",
    }

    @classmethod
    def get_sorter_version(cls):
        return __version__

    @classmethod
    def _check_params(cls, recording, output_folder, params):
        tetrode_groups(recording)
        return params

    @classmethod
    def _run_from_folder(cls, sorter_output_folder, params, verbose):
        import torch
        from spikeinterface.core import NumpySorting
        from spikeinterface.core.job_tools import fix_job_kwargs

        from ...core.device import resolve_device
        from .pipeline import sort_tetrode
        from .preprocessing import check_not_flat, preprocess
        from .weights import load_simsort

        recording = cls.load_recording_from_folder(sorter_output_folder.parent, with_warnings=False)
        fs = recording.get_sampling_frequency()
        detector, embedder, config = load_simsort(params["weights"], resolve_device(params["device"]))
        check_sampling_frequency(fs, config["sampling_frequencies"])
        params = {**params, **{k: config["chosen"][k] for k in config["chosen"] if params.get(k) is None}}
        threads = torch.get_num_threads()
        if "n_jobs" in params["job_kwargs"]:
            torch.set_num_threads(max(1, int(fix_job_kwargs(params["job_kwargs"])["n_jobs"])))
        try:
            samples, labels, groups = [], [], []
            for k, ids in enumerate(tetrode_groups(recording)):
                tetrode = recording.select_channels(list(ids))
                check_not_flat(tetrode.get_traces(end_frame=min(tetrode.get_num_samples(), int(10 * fs))))
                traces = preprocess(tetrode).get_traces().astype(np.float32)
                s, lab = sort_tetrode(traces, fs, detector, embedder, params, progress_bar=verbose)
                samples.append(s)
                labels.append(lab + len(groups))  # units numbered across tetrodes
                groups.extend([k] * len(np.unique(lab)))
                if verbose:
                    print(f"simsort: tetrode {k} ({list(ids)}): {len(s)} spikes in {len(np.unique(lab))} units")
        finally:
            torch.set_num_threads(threads)
        order = np.argsort(np.concatenate(samples), kind="stable")
        sorting = NumpySorting.from_samples_and_labels(
            [np.concatenate(samples)[order]], [np.concatenate(labels)[order]], fs,
            unit_ids=np.arange(len(groups)),
        )  # fmt: skip
        sorting.set_property("group", np.asarray(groups, dtype=np.int64))
        return sorting.save(folder=sorter_output_folder / "sorting")


def register(sorterlist) -> None:
    """Add the sorter to SpikeInterface's ``sorterlist`` module: to the very list and dict that
    ``run_sorter``, ``get_default_sorter_params`` and ``read_sorter_folder`` read (idempotent)."""
    if SimSortSorter.sorter_name not in sorterlist.sorter_dict:
        sorterlist.sorter_full_list.append(SimSortSorter)
        sorterlist.sorter_dict[SimSortSorter.sorter_name] = SimSortSorter


register(sys.modules["spikeinterface.sorters.sorterlist"])  # imported above, through ComponentsBasedSorter
