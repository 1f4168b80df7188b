"""The model protocol: what a family provides, and what every family then gets for free.

A family is a class that derives from :class:`ModelFamily` (a decoder of behaviour: from
:class:`BehaviorDecoder`) and sets :attr:`family`. It provides

- its configuration and tensors (:meth:`get_config`, :meth:`get_tensors`) and how to rebuild
  itself from them (:meth:`from_saved`);
- which sessions it knows and their units (:meth:`session_units`);
- predictions at given times from one segment's spikes (:meth:`predict_segment`);
- for training, a :class:`~spikeinterface_poyo.training.trainer.TrainingTask` (batches, loss,
  validation) that :class:`~spikeinterface_poyo.training.trainer.Trainer` runs.

and gets, without writing any of it: saving and loading with schema versions
(:func:`~spikeinterface_poyo.models.registry.save_model` / ``load_model``), session and
timestamp checks and decoding of any sorting (:func:`~spikeinterface_poyo.models.decoding.decode_behavior`),
the ``poyo_decoding`` analyzer extension, NWB write-back, the command line, and the
scikit-learn face of :class:`DecoderEstimator`. Subclasses register themselves by name when
their module is imported; :mod:`~spikeinterface_poyo.models.registry` imports every
subpackage of ``models/`` to find them.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..core.metrics import r2_score
from ..core.sessions import FINETUNE, resolve_session
from ..core.spikes import SpikeTokens
from ..io.models import read_model_folder, resolve_model_path, write_model_folder
from .decoding import decode_behavior

#: Every registered family, by the name written into model folders.
FAMILIES: dict[str, type] = {}


class NotFittedError(RuntimeError):
    """A model or estimator was used before it was trained."""


class ModelFamily:
    """Base of every saved model (see the module docstring for the protocol).

    Attributes
    ----------
    family : str
        Name of the family in model folders (``"poyo"``, ``"wiener"``, ``"mtm"``...); None for
        classes that are not saved themselves (an estimator that wraps a model).
    family_version : int
        Version of the family's own config and tensor layout.
    meta : dict
        JSON-ready description: ``fingerprints`` (per training session, see
        :func:`~spikeinterface_poyo.core.spikes.sorting_fingerprint`), ``training`` (how it was
        trained) and, for decoders, ``behavior`` and ``normalization``.
    """

    family: ClassVar[str | None] = None
    family_version: ClassVar[int] = 1
    #: the call that adapts a model of the family to new units, named in the errors about them
    adaptation: ClassVar[str] = FINETUNE

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("family")
        if name is not None:
            FAMILIES[name] = cls

    # ---- what a family provides -------------------------------------------------------------
    def get_config(self) -> dict:
        """JSON configuration that, with :meth:`get_tensors`, rebuilds the model."""
        raise NotImplementedError

    def get_tensors(self) -> dict:
        """Named tensors or arrays (stored as safetensors)."""
        raise NotImplementedError

    @classmethod
    def from_saved(cls, config: dict, tensors: dict, meta: dict, family_version: int):
        """Rebuild a model from :meth:`get_config`, :meth:`get_tensors` and ``meta``."""
        raise NotImplementedError

    def session_units(self) -> dict[str, list[str]]:
        """For every session the model knows, the ids of its units (as the sorting has them)."""
        raise NotImplementedError

    # ---- what it gets -----------------------------------------------------------------------
    meta: dict

    def fitted_decoder(self) -> ModelFamily:
        """The trained model behind this object (itself, or a wrapped one); raises if untrained."""
        if not self.session_units():
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet; call fit(sorting, behavior) first.")
        return self

    def resolve_session(self, sorting, session_id: str | None = None) -> str:
        """The session ``sorting`` is read as; a clear error when it cannot be told."""
        fingerprints = self.meta.get("fingerprints", {})
        return resolve_session(self.session_units(), fingerprints, sorting, session_id, self.adaptation)


class BehaviorDecoder(ModelFamily):
    """Base of the model families that decode behaviour: a :class:`ModelFamily` that also
    provides :meth:`predict_segment`."""

    #: The contexts (:data:`~spikeinterface_poyo.core.windows.CONTEXTS`) ``predict_segment`` can be
    #: asked for with ``context=``; empty for a family whose placement is fixed.
    contexts: ClassVar[tuple[str, ...]] = ()

    @property
    def context(self) -> str | None:
        """The context the model decodes with by default (``"centred"`` or ``"causal"``); None for
        a family that does not choose one."""
        return None

    def predict_segment(
        self,
        tokens: SpikeTokens,
        timestamps: np.ndarray,
        session_id: str,
        *,
        batch_size: int = 16,
        n_jobs=None,
        progress_bar: bool = False,
    ) -> np.ndarray:
        """(T, D) predictions, in the behaviour's units, at sorted ``timestamps`` of one segment.

        A family listing :attr:`contexts` also takes ``context=`` (None: its own)."""
        raise NotImplementedError

    @property
    def window_length(self) -> float:
        """Seconds of spikes around a time that a prediction may use (a bound on timestamp checks)."""
        return 1.0

    def behavior_description(self) -> dict:
        """Name, unit, dimension names and rate of the behaviour the model reads out."""
        return dict(self.meta.get("behavior") or {})


class DecoderEstimator:
    """The scikit-learn face: ``fit(sorting, behavior)``, ``predict(sorting, timestamps)``,
    ``score(sorting, behavior)``, ``save(path)`` / ``load(path)`` and ``get_params`` /
    ``set_params`` (the keyword arguments of ``__init__``, stored under their own names)."""

    def fit(self, sorting, behavior):
        raise NotImplementedError

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [p.name for p in signature.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD]

    def get_params(self, deep: bool = True) -> dict:
        """The estimator's settings, as passed to ``__init__``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Change settings (before ``fit``); unknown names are an error."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"{name!r} is not a setting of {type(self).__name__}; its settings are {valid}.")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = [
            f"{k}={v!r}" for k, v in self.get_params().items() if defaults.get(k) is not v and defaults.get(k) != v
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

    def predict(self, sorting, timestamps=None, session_id: str | None = None, **kwargs):
        """Decode ``sorting`` at ``timestamps`` (seconds); see :func:`~spikeinterface_poyo.decode_behavior`."""
        return decode_behavior(sorting, self, timestamps=timestamps, session_id=session_id, **kwargs)

    def score(self, sorting, behavior, session_id: str | None = None) -> float:
        """Mean R² over dimensions of the prediction at ``behavior``'s timestamps."""
        decoded = self.predict(sorting, behavior.timestamps, session_id=session_id, progress_bar=False)
        return r2_score(behavior, decoded)["mean"]

    def save(self, path) -> Path:
        """Save the fitted model as a folder (safetensors + JSON); returns the folder."""
        return save_decoder(self, path)

    @classmethod
    def load(cls, path, device=None):
        """Load a model folder saved by an estimator of this class."""
        return load_decoder(cls, path, device)


def save_decoder(model, path) -> Path:
    """Save any family's model (or a fitted estimator) as a model folder, atomically."""
    decoder = model.fitted_decoder()
    if decoder.family is None:
        raise TypeError(f"{type(decoder).__name__} is not a registered model family and cannot be saved.")
    return write_model_folder(
        path,
        family=decoder.family,
        family_version=decoder.family_version,
        model_class=type(decoder).__name__,
        config=decoder.get_config(),
        meta=decoder.meta,
        tensors=decoder.get_tensors(),
    )


def rebuild(document: dict, tensors: dict, source, device=None):
    """A model of the folder's family from its checked config and tensors."""
    family = FAMILIES.get(document["family"])
    if family is None:
        raise ValueError(
            f"{source} holds a model of family {document['family']!r}, which this installation does not know "
            f"(known: {sorted(FAMILIES)}). Install the package version or plugin that provides it."
        )
    version = int(document.get("family_version", 1))
    if version > family.family_version:
        raise ValueError(
            f"{source} was saved with version {version} of the {document['family']!r} family; this installation "
            f"reads up to version {family.family_version}. Upgrade spikeinterface-poyo to load it."
        )
    model = family.from_saved(document["config"], tensors, document.get("meta", {}), version)
    return model.to_device(device) if hasattr(model, "to_device") else model


def load_decoder(cls, path, device=None):
    """Load a model folder whose family is ``cls`` (or whose class ``cls`` wraps)."""
    path = resolve_model_path(path)
    document, tensors = read_model_folder(path)
    expected = getattr(cls, "wraps_family", None) or cls.family
    if document["family"] != expected:
        raise TypeError(
            f"{path} holds a {document['model_class']} model (family {document['family']!r}), not one "
            f"{cls.__name__} loads; use sip.load_model(path) for any family."
        )
    model = rebuild(document, tensors, path, device)
    return cls.wrap(model) if hasattr(cls, "wrap") else model


def load_state_checked(model, state: dict, source: str) -> None:
    """``load_state_dict`` with a clear error naming the mismatched tensors."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        details = "; ".join(
            part
            for part in (
                f"missing {missing[:5]}" if missing else "",
                f"unexpected {unexpected[:5]}" if unexpected else "",
                f"wrong shapes {wrong[:5]}" if wrong else "",
            )
            if part
        )
        raise ValueError(f"The weights in {source} do not match the model they claim to be: {details}.")
    model.load_state_dict(state)
