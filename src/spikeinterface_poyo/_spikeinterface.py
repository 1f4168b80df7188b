"""Hooks into SpikeInterface: ``spikeinterface.full.decode_behavior`` (and
``spikeinterface.decode_behavior``) become :func:`spikeinterface_poyo.decode_behavior`."""

import spikeinterface
import spikeinterface.full

from .decoding import decode_behavior

for _namespace in (spikeinterface, spikeinterface.full):
    _namespace.decode_behavior = decode_behavior
