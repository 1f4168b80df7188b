"""What the baselines share: training samples from a sorting and a behaviour, the model
protocol for one session, and saving their settings and fitted arrays."""

from __future__ import annotations

import numpy as np

from ..._version import __version__
from ...core.behavior import Behavior, usable_samples
from ...core.sessions import describe_behavior, no_overlap_error
from ...core.spikes import SpikeTokens, namespaced_unit_ids, single_segment_tokens, sorting_fingerprint
from ..base import BehaviorDecoder, DecoderEstimator


def training_samples(tokens: SpikeTokens, behavior: Behavior) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps and values of the valid behaviour samples that lie within the spikes' span."""
    valid = usable_samples(behavior)
    t = behavior.timestamps
    inside_span = valid & (t >= tokens.start_time) & (t <= tokens.end_time)
    if not inside_span.any():
        raise no_overlap_error(behavior, tokens)
    if inside_span.sum() < 20:
        raise ValueError(
            f"Only {int(inside_span.sum())} valid behaviour samples overlap the spikes; a baseline needs at least 20."
        )
    return t[inside_span], behavior.values[inside_span]


def validation_cut(n: int, val_fraction: float) -> int:
    """Index splitting ``n`` time-ordered samples into training and the last ``val_fraction``."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}.")
    cut = int(round(n * (1 - val_fraction)))
    if cut < 1 or cut >= n - 1:
        raise ValueError(f"{n} samples are too few to hold out {val_fraction:.0%} for validation.")
    return cut


class BaselineDecoder(DecoderEstimator, BehaviorDecoder):
    """A decoder of one session on binned counts, fitted like a scikit-learn estimator.

    Subclasses implement ``_fit_arrays(tokens, t, y)`` (set their fitted attributes),
    ``_predict_arrays(tokens, t)`` (predictions in behaviour units), ``_fitted_arrays()`` /
    ``_restore_arrays(tensors)`` for saving, and list their settings in ``__init__``.
    """

    adaptation = "a decoder fitted on it (decoder.fit(sorting, behavior))"
    #: settings that do not describe the fitted model (not saved)
    _unsaved_params = ("device",)

    def fit(self, sorting, behavior: Behavior):
        """Fit on the valid samples of ``behavior`` that overlap the spikes; returns ``self``.

        Parameters
        ----------
        sorting : BaseSorting or SortingAnalyzer
            Spikes of the session (one segment).
        behavior : Behavior
            Target behaviour on the spikes' clock; NaN samples are left out.
        """
        session_id = str(getattr(self, "session_id", "session"))
        tokens = single_segment_tokens(sorting)
        t, y = training_samples(tokens, behavior)
        self._fit_arrays(tokens, t, y)
        self.unit_ids_ = [str(u) for u in getattr(sorting, "sorting", sorting).unit_ids]
        self.session_id_ = session_id
        self.meta = {
            "behavior": describe_behavior(behavior),
            "fingerprints": {session_id: sorting_fingerprint(sorting)},
            "training": {"package_version": __version__, "sessions": [session_id], "params": self._saved_params()},
        }
        return self

    # ---- the model protocol -----------------------------------------------------------------
    @property
    def window_length(self) -> float:
        """Seconds of spikes around a decoded time that the features span (history and look-ahead)."""
        return self.bin_size * (self.lags + getattr(self, "leads", 0))

    def session_units(self) -> dict[str, list[str]]:
        return {self.session_id_: self.unit_ids_} if hasattr(self, "unit_ids_") else {}

    def predict_segment(self, tokens, timestamps, session_id, *, batch_size=16, n_jobs=None, progress_bar=False):
        return self._predict_arrays(self._fitted_units(tokens, session_id), np.asarray(timestamps, dtype=np.float64))

    #: what the error on a sorting with other units suggests
    _other_units_advice = "Decode the whole sorting it was fitted on."

    def _fitted_units(self, tokens: SpikeTokens, session_id: str) -> SpikeTokens:
        """``tokens`` with units in the fitted order; an error unless they are exactly the fitted units."""
        expected = namespaced_unit_ids(session_id, self.unit_ids_)
        if list(tokens.unit_ids) != expected:
            if sorted(tokens.unit_ids) != sorted(expected):
                raise ValueError(
                    f"A {type(self).__name__} decodes from exactly the {len(expected)} units it was fitted on; this "
                    f"sorting has {tokens.num_units} of them. {self._other_units_advice}"
                )
            tokens = _reordered(tokens, expected)
        return tokens

    def _saved_params(self) -> dict:
        return {k: v for k, v in self.get_params().items() if k not in self._unsaved_params}

    def get_config(self) -> dict:
        return {"params": self._saved_params(), "unit_ids": self.unit_ids_, "session_id": self.session_id_}

    def get_tensors(self) -> dict:
        return self._fitted_arrays()

    @classmethod
    def from_saved(cls, config: dict, tensors: dict, meta: dict, family_version: int = 1):
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in config["params"].items()}
        model = cls(**params)
        model.unit_ids_, model.session_id_, model.meta = list(config["unit_ids"]), config["session_id"], meta
        model._restore_arrays({k: v.numpy() for k, v in tensors.items()})
        return model


def _reordered(tokens: SpikeTokens, unit_ids: list[str]) -> SpikeTokens:
    """The same spikes with units numbered in the order of ``unit_ids``."""
    position = {u: i for i, u in enumerate(unit_ids)}
    remap = np.array([position[u] for u in tokens.unit_ids], dtype=np.int64)
    return SpikeTokens(
        times=tokens.times,
        unit_index=remap[tokens.unit_index],
        unit_ids=list(unit_ids),
        session_id=tokens.session_id,
        start_time=tokens.start_time,
        end_time=tokens.end_time,
        unit_properties={},
        segment_index=tokens.segment_index,
    )
