"""Analyses of population dynamics and of trained decoders: MoLDS trial clustering (``molds``);
reserved for the BrainBits bottleneck curves (issue 17)."""
