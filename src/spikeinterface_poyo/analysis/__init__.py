"""Reserved for analyses of trained decoders and of population dynamics: BrainBits bottleneck curves
(issue 17) and MoLDS trial clustering (issue 19)."""
