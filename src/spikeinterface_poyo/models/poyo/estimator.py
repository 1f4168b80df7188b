"""POYO with the scikit-learn face: ``POYODecoder(preset="small").fit(sorting, behavior)``."""

from __future__ import annotations

from ...training.config import TrainingConfig
from ..base import DecoderEstimator, NotFittedError
from .model import POYO
from .training import train_decoder


class POYODecoder(DecoderEstimator):
    """A POYO decoder as an estimator.

    Parameters
    ----------
    preset : str, default: "small"
        Architecture from :data:`~spikeinterface_poyo.models.poyo.PRESETS`.
    config : TrainingConfig or None, default: None
        How to train (:class:`TrainingConfig`'s defaults when None).
    session_id : str, default: "session"
        Name of the training session (namespaces its unit ids).
    device : str, torch.device or None, default: None
        CUDA when available, else the CPU.
    context : {"centred", "causal"}, default: "centred"
        Window placement of the model (see :func:`~spikeinterface_poyo.train_decoder`).

    Attributes
    ----------
    model_ : POYO
        The trained network, after :meth:`fit`.

    Examples
    --------
    >>> train, test = behavior.split(0.7)
    >>> decoder = sip.POYODecoder(config=sip.TrainingConfig(max_time_s=120)).fit(sorting, train)
    >>> decoder.score(sorting, test)
    """

    wraps_family = "poyo"

    def __init__(
        self,
        preset: str = "small",
        config: TrainingConfig | None = None,
        session_id="session",
        device=None,
        context: str = "centred",
    ):
        self.preset, self.config, self.session_id, self.device = preset, config, session_id, device
        self.context = context

    def fit(self, sorting, behavior) -> POYODecoder:
        """Train on ``behavior`` (the time it covers) and the sorting's spikes; returns ``self``."""
        self.model_ = train_decoder(
            sorting, behavior, self.preset, session_id=self.session_id, context=self.context, config=self.config,
            device=self.device,
        )  # fmt: skip
        return self

    @classmethod
    def wrap(cls, model: POYO) -> POYODecoder:
        """An estimator around a trained POYO (from :func:`load_model`, say)."""
        preset = model.meta.get("training", {}).get("preset", "small")
        sessions = model.session_emb.vocab[1:]
        decoder = cls(preset=preset, session_id=sessions[0] if len(sessions) == 1 else "session", context=model.context)
        decoder.model_ = model
        return decoder

    def fitted_decoder(self) -> POYO:
        """The trained network (what decoding, saving and the analyzer extension use)."""
        if not hasattr(self, "model_"):
            raise NotFittedError("This POYODecoder is not fitted yet; call fit(sorting, behavior) first.")
        return self.model_
