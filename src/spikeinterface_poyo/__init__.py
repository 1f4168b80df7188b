"""POYO neural decoding for SpikeInterface and NWB.

>>> import spikeinterface_poyo as sip
>>> model = sip.train_decoder(sorting, sip.read_nwb_behavior("session.nwb", "hand_velocity"))
>>> decoded = sip.decode_behavior(sorting, model)

Importing the package also registers the ``poyo_decoding`` analyzer extension, the
``ndx-poyo`` NWB namespace, and ``spikeinterface.full.decode_behavior``.
"""

__version__ = "0.1.0"

from . import _spikeinterface  # noqa: F401  (exposes si.decode_behavior)
from .analyzer_extension import ComputePoyoDecoding, compute_poyo_decoding
from .behavior import Behavior, list_nwb_behaviors, read_nwb_behavior
from .checkpoint import available_models, load_model, load_torch_brain_checkpoint, save_model
from .decoding import decode_behavior
from .finetuning import finetune
from .metrics import r2_score
from .model import POYO, PRESETS
from .nwb import load_nwb_session, read_predictions_from_nwb, write_predictions_to_nwb
from .sessions import SessionSource, nwb_session
from .simulation import simulate_corpus, simulate_recording, simulate_session
from .threshold import threshold_crossings
from .tokens import SpikeTokens, sorting_to_tokens
from .training import pretrain, train_decoder

__all__ = [
    "Behavior",
    "SessionSource",
    "ComputePoyoDecoding",
    "POYO",
    "available_models",
    "finetune",
    "pretrain",
    "PRESETS",
    "SpikeTokens",
    "compute_poyo_decoding",
    "decode_behavior",
    "list_nwb_behaviors",
    "load_model",
    "load_nwb_session",
    "load_torch_brain_checkpoint",
    "nwb_session",
    "r2_score",
    "read_nwb_behavior",
    "read_predictions_from_nwb",
    "save_model",
    "simulate_corpus",
    "simulate_recording",
    "simulate_session",
    "sorting_to_tokens",
    "threshold_crossings",
    "train_decoder",
    "write_predictions_to_nwb",
]
