"""Reserved for MtM (Zhang et al., NeurIPS 2024): masked modelling across neurons, time and regions (issue 14)."""
