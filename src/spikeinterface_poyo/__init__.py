"""POYO neural decoding for SpikeInterface and NWB.

>>> import spikeinterface_poyo as sip
>>> model = sip.train_decoder(sorting, sip.read_nwb_behavior("session.nwb", "hand_velocity"))
>>> decoded = sip.decode_behavior(sorting, model)
"""

__version__ = "0.1.0"

from .behavior import Behavior, list_nwb_behaviors, read_nwb_behavior
from .checkpoint import load_model, load_torch_brain_checkpoint, save_model
from .decoding import decode_behavior
from .metrics import r2_score
from .model import POYO, PRESETS
from .simulation import simulate_session
from .tokens import SpikeTokens, sorting_to_tokens
from .training import train_decoder
from . import _spikeinterface  # noqa: F401  (exposes si.decode_behavior)

__all__ = [
    "Behavior",
    "POYO",
    "PRESETS",
    "SpikeTokens",
    "decode_behavior",
    "list_nwb_behaviors",
    "load_model",
    "load_torch_brain_checkpoint",
    "r2_score",
    "read_nwb_behavior",
    "save_model",
    "simulate_session",
    "sorting_to_tokens",
    "train_decoder",
]
