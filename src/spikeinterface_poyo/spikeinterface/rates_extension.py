"""The ``mtm_rates`` SortingAnalyzer extension: the firing rate of every unit in every bin,
inferred by a saved MtM model.

>>> sip.save_model(model, "mtm_model")
>>> analyzer.compute("mtm_rates", model="mtm_model")
>>> rates = analyzer.get_extension("mtm_rates").get_data()   # sip.Behavior, (bins, units) in Hz

Like ``poyo_decoding``, it stores arrays and JSON only and refers to the model by its folder
and the sha256 of its weights.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from spikeinterface.core.sortinganalyzer import AnalyzerExtension

from ..core.behavior import Behavior
from ..models.registry import load_model
from .extension import _check_model_folder, _check_sorting, _checked_sha256, _register, _resolve_model

_STALE_KEY = "stale_reason"


class ComputeMtmRates(AnalyzerExtension):
    """Infer every unit's firing rate in every bin with a trained MtM model.

    Each unit's rate is read out while that unit is masked (see
    :func:`~spikeinterface_poyo.infer_rates`), so it is predicted from the other units.

    Parameters
    ----------
    sorting_analyzer : SortingAnalyzer
        The SortingAnalyzer object; its sorting must hold every unit of a session the model knows.
    model : str or Path or MtM
        The folder of an MtM model saved with :func:`~spikeinterface_poyo.save_model`; an
        in-memory model only with ``model_path``, the folder it was saved to.
    model_path : str or Path or None, default: None
        The saved folder of an in-memory ``model``.
    session_id : str or None, default: None
        The session the sorting is; recognised from its spikes when None.
    batch_size : int, default: 32
        Windows per forward pass.
    model_sha256 : str or None, default: None
        Expected sha256 of the model's weights; filled in on compute, checked on recompute.
    **job_kwargs
        ``progress_bar``.

    Returns
    -------
    rates : Behavior or list of Behavior
        (bins, units) rates in Hz at the bin centres, one per segment.

    Notes
    -----
    Selecting units keeps their columns (rates inferred from the whole population). Merging or
    splitting units makes units the model has never seen: the result is marked stale.
    """

    extension_name = "mtm_rates"
    depend_on = []
    need_recording = False
    use_nodepipeline = False
    need_job_kwargs = True
    need_backward_compatibility_on_load = False

    def __init__(self, sorting_analyzer):
        super().__init__(sorting_analyzer)
        self._model = None

    def _set_params(self, model=None, model_path=None, session_id=None, batch_size=32, model_sha256=None):
        path, self._model = _resolve_model(model, model_path)
        sha = _checked_sha256(path, model_sha256)
        _check_sorting(self.sorting_analyzer.sorting)
        decoder = self._get_model(path, sha)
        if decoder.family != "mtm":
            raise TypeError(
                f"The model at {path} is a {decoder.family!r} model; mtm_rates needs an MtM model "
                "(decode behaviour with analyzer.compute('poyo_decoding', model=...))."
            )
        session_id = decoder.resolve_session(self.sorting_analyzer.sorting, session_id)
        return dict(model_path=str(path), model_sha256=sha, session_id=session_id, batch_size=int(batch_size))

    def _get_model(self, path=None, sha=None):
        if self._model is None:
            path = Path(path or self.params["model_path"])
            _check_model_folder(path)
            _checked_sha256(path, sha or self.params["model_sha256"])
            self._model = load_model(path)
        return self._model

    def _run(self, verbose=False, **job_kwargs):
        from spikeinterface.core.segmentutils import SelectSegmentSorting

        from ..models.mtm.rates import infer_rates

        sorting = self.sorting_analyzer.sorting
        model = self._get_model()
        num_segments = sorting.get_num_segments()
        data = {}
        for seg in range(num_segments):
            one = sorting if num_segments == 1 else SelectSegmentSorting(sorting, [seg])
            rates = infer_rates(
                one,
                model,
                self.params["session_id"],
                self.params["batch_size"],
                job_kwargs.get("progress_bar", verbose),
            )
            data[f"times_segment{seg}"] = rates.timestamps
            data[f"rates_segment{seg}"] = rates.values.astype(np.float32)
        data["rates_info"] = dict(
            unit_ids=list(rates.dimension_names), bin_size=model.bin_size, num_segments=num_segments
        )
        self.data = data

    def _get_data(self, segment_index=None):
        if _STALE_KEY in self.data:
            raise RuntimeError(
                f"The 'mtm_rates' result is stale: {self.data[_STALE_KEY]['reason']} Recompute it with a model that "
                "knows the current units, or delete it with analyzer.delete_extension('mtm_rates')."
            )
        info = self.data["rates_info"]
        segments = range(info["num_segments"]) if segment_index is None else [segment_index]
        out = [
            Behavior(
                np.asarray(self.data[f"times_segment{seg}"]),
                np.asarray(self.data[f"rates_segment{seg}"], dtype=np.float64),
                name="inferred_rates",
                unit="Hz",
                dimension_names=info["unit_ids"],
            )
            for seg in segments
        ]
        return out[0] if len(out) == 1 else out

    def _select_units_extension_data(self, unit_ids):
        if _STALE_KEY in self.data:
            return dict(self.data)
        info = self.data["rates_info"]
        columns = [info["unit_ids"].index(str(u)) for u in unit_ids]
        data = {k: v for k, v in self.data.items() if k.startswith("times_segment")}
        for seg in range(info["num_segments"]):
            data[f"rates_segment{seg}"] = np.asarray(self.data[f"rates_segment{seg}"])[:, columns]
        data["rates_info"] = dict(info, unit_ids=[info["unit_ids"][c] for c in columns])
        return data

    def _merge_extension_data(
        self, merge_unit_groups, new_unit_ids, new_sorting_analyzer, keep_mask=None, verbose=False, **job_kwargs
    ):
        return self._stale(f"units {[list(g) for g in merge_unit_groups]} were merged")

    def _split_extension_data(self, split_units, new_unit_ids, new_sorting_analyzer, verbose=False, **job_kwargs):
        return self._stale(f"units {list(split_units)} were split")

    def _stale(self, what: str) -> dict:
        reason = f"{what}, and the MtM model at {self.params['model_path']} was not trained on the new units."
        warnings.warn(f"'mtm_rates' is marked stale: {reason}", stacklevel=2)
        return {_STALE_KEY: {"reason": reason}}


_register(ComputeMtmRates)
compute_mtm_rates = ComputeMtmRates.function_factory()
