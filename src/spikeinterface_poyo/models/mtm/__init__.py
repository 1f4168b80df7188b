"""MtM (Zhang et al., NeurIPS 2024): multi-task masked modelling of binned spike counts across
sessions, neurons, brain regions and time, with the NDT1-stitcher backbone and prompt tokens.

- :mod:`.data`: binned windows of a sorting, split into train / validation / test;
- :mod:`.masking`: the masking schemes and a session's regions;
- :mod:`.model`: the transformer (:class:`MtM`, family ``"mtm"``);
- :mod:`.task` and :mod:`.training`: training on the package's loop, pretraining, finetuning;
- :mod:`.rates`: rates inferred for every unit and bin;
- :mod:`.evaluate`: bits per spike on co-smoothing, forward and region prediction, baselines,
  behaviour decoding from inferred rates.
"""

from ..masking import MTM_SCHEMES, SCHEMES, draw_mask, session_regions
from .data import BinnedSession, bin_session
from .evaluate import decode_from_rates, decode_labels_from_rates, evaluate_mtm, smoothing_cosmoothing
from .model import PRESETS, MtM
from .rates import infer_rates
from .training import finetune_mtm, pretrain_mtm

MTM_PRESETS = PRESETS

__all__ = [
    "MTM_PRESETS", "MTM_SCHEMES", "PRESETS", "SCHEMES", "BinnedSession", "MtM", "bin_session", "decode_from_rates",
    "decode_labels_from_rates", "draw_mask", "evaluate_mtm", "finetune_mtm", "infer_rates", "pretrain_mtm",
    "session_regions", "smoothing_cosmoothing",
]  # fmt: skip
