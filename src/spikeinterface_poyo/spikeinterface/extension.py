"""The ``poyo_decoding`` SortingAnalyzer extension: decoded behaviour from any family's saved model.

>>> import spikeinterface_poyo as sip
>>> sip.save_model(model, "decoder")
>>> analyzer.compute("poyo_decoding", model="decoder")
>>> decoded = analyzer.get_extension("poyo_decoding").get_data()

The extension stores arrays and JSON only. The model is never pickled into the analyzer: it
is referenced by the absolute path of the folder :func:`~spikeinterface_poyo.save_model` wrote
and by the sha256 of its weights, so a saved analyzer opens (and its decoded behaviour reads
back) even where the model is gone; only recomputing needs the model.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from spikeinterface.core.sortinganalyzer import AnalyzerExtension, register_result_extension

from ..core.behavior import Behavior
from ..io.models import CONFIG_FILE, WEIGHTS_FILE, model_sha256, read_model_config
from ..models.decoding import decode_behavior
from ..models.registry import load_model

_STALE_KEY = "stale_reason"


class ComputePoyoDecoding(AnalyzerExtension):
    """Decode behaviour from the analyzer's sorting with a trained model (POYO or any other family).

    Parameters
    ----------
    sorting_analyzer : SortingAnalyzer
        The SortingAnalyzer object. Its units must be in the model's vocabulary (the sorting
        the model was trained on, or a subset of its units).
    model : str or Path or BehaviorDecoder
        The folder of a model saved with :func:`~spikeinterface_poyo.save_model` (any family:
        POYO, a baseline...). An in-memory model is accepted only together with ``model_path``,
        the folder it was saved to (the weights are checked to be the same): the analyzer keeps a
        reference to the saved model, never the model itself, so ``save_model`` it first.
    model_path : str or Path or None, default: None
        The saved folder of an in-memory ``model``.
    timestamps : array_like or list of array_like or None, default: None
        Times (seconds) to decode at: one array for every segment, or a list with one array
        per segment. By default each segment's span is decoded at the sampling rate of the
        behaviour the model was trained on (or ``rate``).
    session_id : str or None, default: None
        Session the sorting belongs to; defaults to the model's only session.
    rate : float or None, default: None
        Sampling rate (Hz) of the default timestamps.
    batch_size : int, default: 16
        Windows per forward pass.
    model_sha256 : str or None, default: None
        Expected sha256 of the model's weights; filled in on compute, checked on recompute.
    **job_kwargs
        ``n_jobs`` (forward passes at once on a CPU, see :func:`decode_behavior`) and
        ``progress_bar``.

    Stored parameters (JSON): ``model_path`` (absolute), ``model_sha256``, ``session_id``,
    ``rate``, ``batch_size`` and ``timestamps_source`` ("given" or "sorting span"). The
    timestamps themselves are stored as data, with the decoded values; the data's
    ``behavior_info`` also names the model's window placement (``context``: "centred" or
    "causal" for POYO, None for families without a choice).

    Returns
    -------
    decoded : Behavior or list of Behavior
        The decoded behaviour, one per segment for a multi-segment sorting.

    Notes
    -----
    Selecting units (``analyzer.select_units``) decodes again from the remaining units with the
    same model, which needs the model folder. Merging or splitting units creates units the model
    has never seen, so the extension of the merged / split analyzer is marked stale and its
    ``get_data()`` raises; recompute it with a model trained (or fine-tuned) on the new units.
    """

    extension_name = "poyo_decoding"
    depend_on = []
    need_recording = False
    use_nodepipeline = False
    need_job_kwargs = True  # n_jobs and progress_bar reach decode_behavior
    need_backward_compatibility_on_load = False

    def __init__(self, sorting_analyzer):
        super().__init__(sorting_analyzer)
        self._model = None  # the model to decode with: handed to compute(), or loaded once from its folder
        self._timestamps = None  # per-segment timestamps of the next run
        self._validated = None  # params validated by set_params, before the base class resets storage
        self._keep_stored_result = False

    # ---- parameters --------------------------------------------------------------------------

    def set_params(self, save=True, **params):
        # Validate first: the base class wipes the stored result before calling _set_params, and a
        # recompute that fails (model moved, no spikes...) must leave the previous result intact.
        try:
            self._validated = self._validate_params(**params)
        except BaseException:
            self._keep_stored_result = True
            raise
        super().set_params(save=save, **params)

    def _set_params(self, **params):
        validated, self._validated = self._validated, None
        return validated if validated is not None else self._validate_params(**params)

    def _validate_params(
        self,
        model=None,
        model_path=None,
        timestamps=None,
        session_id=None,
        rate=None,
        batch_size=16,
        model_sha256=None,
        timestamps_source=None,  # written by a previous compute; recorded, not an input
    ):
        path, self._model = _resolve_model(model, model_path)
        config = read_model_config(path)
        sha = _checked_sha256(path, model_sha256)
        sorting = self.sorting_analyzer.sorting
        _check_sorting(sorting)
        _warn_sampling_frequency(sorting, config)
        decoder = self._get_model(path, sha)
        session_id = decoder.fitted_decoder().resolve_session(sorting, session_id)
        self._timestamps = _per_segment_timestamps(timestamps, sorting.get_num_segments())
        return dict(
            model_path=str(path),
            model_sha256=sha,
            session_id=session_id,
            rate=None if rate is None else float(rate),
            batch_size=int(batch_size),
            timestamps_source="given" if timestamps is not None else "sorting span",
        )

    # ---- computing ---------------------------------------------------------------------------

    def _run(self, verbose=False, **job_kwargs):
        model = self._get_model()
        sorting = self.sorting_analyzer.sorting
        progress_bar = job_kwargs.get("progress_bar", verbose)
        self.data = self._decode(sorting, model, self._timestamps, progress_bar, job_kwargs.get("n_jobs"))
        self._timestamps = None

    def _decode(self, sorting, model, timestamps, progress_bar=False, n_jobs=None) -> dict:
        """Decode every segment; returns the extension's data dict (arrays and one JSON dict)."""
        from spikeinterface.core.segmentutils import SelectSegmentSorting

        num_segments = sorting.get_num_segments()
        timestamps = timestamps if timestamps is not None else [None] * num_segments
        data = {}
        for seg in range(num_segments):
            one = sorting if num_segments == 1 else SelectSegmentSorting(sorting, [seg])
            decoded = decode_behavior(
                one,
                model,
                timestamps=timestamps[seg],
                session_id=self.params["session_id"],
                rate=self.params["rate"],
                batch_size=self.params["batch_size"],
                progress_bar=progress_bar,
                n_jobs=n_jobs,
            )
            data[f"timestamps_segment{seg}"] = decoded.timestamps
            data[f"decoded_segment{seg}"] = decoded.values
        data["behavior_info"] = dict(
            name=decoded.name,
            unit=decoded.unit,
            dimension_names=list(decoded.dimension_names),
            num_segments=num_segments,
            unit_ids=[str(u) for u in sorting.unit_ids],
            context=model.fitted_decoder().context,  # POYO's window placement ("centred" / "causal"); None otherwise
        )
        return data

    def _get_model(self, path=None, sha=None):
        """The model to decode with: the one handed in, else the saved folder (checked), loaded once."""
        if self._model is not None:
            return self._model
        path = Path(path or self.params["model_path"])
        _check_model_folder(path)
        _checked_sha256(path, sha or self.params["model_sha256"])
        self._model = load_model(path)
        return self._model

    # ---- reading -----------------------------------------------------------------------------

    def _get_data(self, segment_index=None):
        info = self.data.get("behavior_info")
        if _STALE_KEY in self.data:
            reason = self.data[_STALE_KEY]["reason"]
            raise RuntimeError(
                f"The 'poyo_decoding' result is stale: {reason} Recompute it with a model that knows the "
                "current units (analyzer.compute('poyo_decoding', model=...)), or delete it with "
                "analyzer.delete_extension('poyo_decoding')."
            )
        segments = range(info["num_segments"]) if segment_index is None else [segment_index]
        decoded = [
            Behavior(
                np.asarray(self.data[f"timestamps_segment{seg}"]),
                np.asarray(self.data[f"decoded_segment{seg}"]),
                name=info["name"],
                unit=info["unit"],
                dimension_names=info["dimension_names"],
            )
            for seg in segments
        ]
        return decoded[0] if len(decoded) == 1 else decoded

    # ---- unit changes ------------------------------------------------------------------------

    def _select_units_extension_data(self, unit_ids):
        sorting = self.sorting_analyzer.sorting
        if _STALE_KEY in self.data:
            return dict(self.data)
        if len(unit_ids) == sorting.get_num_units() and np.array_equal(np.asarray(unit_ids), sorting.unit_ids):
            return dict(self.data)
        # every remaining unit is in the model's vocabulary: decode again from the subset
        subset = sorting.select_units(unit_ids)
        if len(subset.to_spike_vector()) == 0:
            raise ValueError(
                f"The {len(unit_ids)} selected units have no spikes; there is nothing to decode the 'poyo_decoding' "
                "extension from. Delete it first (analyzer.delete_extension('poyo_decoding')) to keep these units."
            )
        try:
            model = self._get_model()
        except FileNotFoundError as err:
            raise FileNotFoundError(
                f"{err} Selecting units re-decodes 'poyo_decoding' from the remaining units and needs the model; "
                "restore it, or delete the extension first (analyzer.delete_extension('poyo_decoding'))."
            ) from None
        num_segments = self.data["behavior_info"]["num_segments"]
        timestamps = [np.asarray(self.data[f"timestamps_segment{seg}"]) for seg in range(num_segments)]
        return self._decode(subset, model, timestamps)

    def _merge_extension_data(
        self, merge_unit_groups, new_unit_ids, new_sorting_analyzer, keep_mask=None, verbose=False, **job_kwargs
    ):
        return self._stale(f"units {_groups(merge_unit_groups)} were merged into {list(new_unit_ids)}")

    def _split_extension_data(self, split_units, new_unit_ids, new_sorting_analyzer, verbose=False, **job_kwargs):
        return self._stale(f"units {list(split_units)} were split into {_groups(new_unit_ids)}")

    def _stale(self, what: str) -> dict:
        reason = (
            f"{what}, which the model at {self.params['model_path']} was not trained on, so the "
            "behaviour cannot be decoded again from the new units."
        )
        warnings.warn(f"'poyo_decoding' is marked stale: {reason}", stacklevel=2)
        return {_STALE_KEY: {"reason": reason}}

    # ---- storage -----------------------------------------------------------------------------

    def _delete_extension_folder(self):
        # SpikeInterface deletes the extension's storage when compute() fails; when the failure
        # came from validation nothing was touched yet, and the stored result must survive.
        if self._keep_stored_result:
            self._keep_stored_result = False
            return
        super()._delete_extension_folder()


def _groups(groups) -> list:
    return [list(g) for g in groups]


def _resolve_model(model, model_path) -> tuple[Path, object]:
    """The model's saved folder, and the in-memory model to decode with (if one was given)."""
    if model is not None and not isinstance(model, (str, Path)):
        if not hasattr(model, "fitted_decoder"):
            raise TypeError(
                f"model must be a saved model's folder (str or Path) or a trained model, got {type(model).__name__}."
            )
        if model_path is None:
            raise ValueError(
                "The 'poyo_decoding' extension keeps a reference to a saved model, never the model itself: "
                "save_model first, e.g. sip.save_model(model, 'decoder') and then "
                "analyzer.compute('poyo_decoding', model='decoder') (or pass model_path='decoder' with the model)."
            )
        path = _absolute(model_path)
        _check_model_folder(path)
        _check_same_weights(model, path)
        return path, model
    if model is None and model_path is None:
        raise ValueError("Pass model=, the folder of a model saved with sip.save_model.")
    if model is not None and model_path is not None and _absolute(model) != _absolute(model_path):
        raise ValueError(f"model={model!r} and model_path={model_path!r} name different folders; pass one.")
    path = _absolute(model if model is not None else model_path)
    _check_model_folder(path)
    return path, None


def _absolute(path) -> Path:
    return Path(path).expanduser().resolve()


def _check_model_folder(path: Path) -> None:
    if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(
            f"No saved model at {path} (expected {CONFIG_FILE} and {WEIGHTS_FILE} there): the model folder "
            "was moved or deleted. Restore it, or pass model= with its new location."
        )


def _checked_sha256(path: Path, expected: str | None) -> str:
    """sha256 of the saved weights, which must match ``expected`` when one is given."""
    sha = model_sha256(path)
    if expected is not None and sha != expected:
        raise ValueError(
            f"The model at {path} is not the one this decoding was computed with (weights sha256 {sha[:12]}..., "
            f"expected {expected[:12]}...): it was retrained or replaced. Pass model= explicitly to decode with it."
        )
    return sha


def _check_same_weights(model, path: Path) -> None:
    """The in-memory model must hold the weights saved at ``path``."""
    import torch
    from safetensors.torch import load_file

    saved = load_file(str(path / WEIGHTS_FILE))
    own = {k: torch.as_tensor(v) for k, v in model.fitted_decoder().get_tensors().items()}
    same = set(saved) == set(own) and all(torch.equal(saved[k], own[k].detach().cpu()) for k in own)
    if not same:
        raise ValueError(
            f"The model passed differs from the one saved at {path}; save_model(model, {str(path)!r}) again "
            "so the analyzer refers to the weights it was decoded with."
        )


def _check_sorting(sorting) -> None:
    if sorting.get_num_units() == 0:
        raise ValueError("The analyzer's sorting has no units; there is nothing to decode from.")
    if len(sorting.to_spike_vector()) == 0:
        raise ValueError("The analyzer's sorting has no spikes in any unit; there is nothing to decode from.")


def _warn_sampling_frequency(sorting, config: dict) -> None:
    trained_at = config.get("meta", {}).get("sampling_frequency")
    if trained_at and not np.isclose(trained_at, sorting.sampling_frequency):
        warnings.warn(
            f"The model was trained on a sorting sampled at {trained_at:g} Hz and this one is sampled at "
            f"{sorting.sampling_frequency:g} Hz. Decoding works on spike times in seconds, so it goes on, but "
            "check that this is the recording the model was trained for.",
            stacklevel=2,
        )


def _per_segment_timestamps(timestamps, num_segments: int) -> list | None:
    if timestamps is None:
        return None
    if isinstance(timestamps, (list, tuple)) and len(timestamps) and np.ndim(timestamps[0]) == 1:
        if len(timestamps) != num_segments:
            raise ValueError(f"{len(timestamps)} timestamp arrays for a sorting with {num_segments} segments.")
        per_segment = [np.asarray(t, dtype=np.float64) for t in timestamps]
    else:
        per_segment = [np.asarray(timestamps, dtype=np.float64)] * num_segments
    for t in per_segment:
        if t.ndim != 1 or len(t) == 0 or not np.all(np.isfinite(t)):
            raise ValueError("timestamps must be non-empty 1-D arrays of finite times in seconds.")
    return per_segment


def _register(extension_class) -> None:
    """Register the extension, replacing a previous definition of it (``importlib.reload``)."""
    from spikeinterface.core import sortinganalyzer

    registered = sortinganalyzer._possible_extensions
    registered[:] = [
        ext
        for ext in registered
        if not (ext.extension_name == extension_class.extension_name and ext.__module__ == extension_class.__module__)
    ]
    register_result_extension(extension_class)


_register(ComputePoyoDecoding)
compute_poyo_decoding = ComputePoyoDecoding.function_factory()
