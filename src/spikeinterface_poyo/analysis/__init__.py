"""Analyses of population dynamics and of trained decoders: MoLDS trial clustering (``molds``) and
BrainBits bottleneck curves, how many dimensions of the recording a decoder reads (``bottleneck``)."""
