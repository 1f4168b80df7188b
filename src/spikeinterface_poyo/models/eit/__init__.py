"""EIT (Liu et al., NeurIPS 2022): an individual-then-population transformer, families ``"eit"``
and ``"eit_classifier"``.

- :class:`EITDecoder`: decodes continuous behaviour; :meth:`EITDecoder.transfer_from` reuses a
  fitted decoder's individual module, frozen, on another session or animal.
- :class:`EITClassifier`: the same model for a discrete behaviour (reach direction).
- :func:`neuron_alignment`: Wasserstein distances between neurons' individual latents.
- ``network.py``: the individual and population modules as plain nn.Modules.
"""

from .alignment import neuron_alignment
from .decoder import EITClassifier, EITDecoder

__all__ = ["EITClassifier", "EITDecoder", "neuron_alignment"]
