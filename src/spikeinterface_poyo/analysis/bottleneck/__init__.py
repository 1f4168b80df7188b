"""BrainBits bottleneck curves (Mayo, Wang et al., NeurIPS 2024): how much of a recording a decoder
reads, as its held-out score through a jointly trained linear bottleneck of width k, against k,
next to random baselines and ceilings.

Modules: ``layers`` (the bottleneck ``z_t = W x_t + b``: learned, identity or PCA), ``decoders``
(``BottleneckDecoder``: the Wiener filter, MLP, GRU and POYO with a bottleneck in front),
``poyo`` (``BinnedPOYO``: POYO reading binned values as value tokens, and the squeeze of its
latents), ``controls`` (circularly shifted spikes and the behaviour-only autoregressive
reference), ``curve`` (the
normalisation, k at a fraction of the way, the block bootstrap), ``result`` (``BottleneckCurve``),
``sweep`` (``bottleneck_curve``).
"""

from .decoders import SUPPORTED, BottleneckDecoder
from .poyo import BinnedPOYO
from .result import BottleneckCurve, KEstimate
from .sweep import bottleneck_curve

__all__ = ["SUPPORTED", "BinnedPOYO", "BottleneckCurve", "BottleneckDecoder", "KEstimate", "bottleneck_curve"]
