"""POYO (Azabou et al., NeurIPS 2023): spike tokens, rotary time, a PerceiverIO, session-aware
output queries; training, pretraining across sessions (with behaviour, from spikes alone by
masked modelling, or both), finetuning to new units (semi-supervised too), the estimator
face, and streaming (causal models, closed loop). The family is registered as ``"poyo"``."""

from .estimator import POYODecoder
from .finetuning import finetune
from .masked import encoding_bits_per_spike
from .model import POYO, PRESETS
from .streaming import FalconDecoder, InsufficientContextWarning, StreamingDecoder, StreamPredictions
from .torch_brain import load_torch_brain_checkpoint
from .training import pretrain, train_decoder

__all__ = [
    "FalconDecoder",
    "InsufficientContextWarning",
    "POYO",
    "POYODecoder",
    "PRESETS",
    "StreamPredictions",
    "StreamingDecoder",
    "encoding_bits_per_spike",
    "finetune",
    "load_torch_brain_checkpoint",
    "pretrain",
    "train_decoder",
]
