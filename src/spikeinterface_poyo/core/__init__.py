"""Model-agnostic pieces: behaviour, spike tokens, binning, windows, intervals, sessions,
metrics and device choice. Nothing here imports a model, a file format or torch's nn."""
