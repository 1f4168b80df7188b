"""Spike sorting learned from simulation: SimSort (:mod:`.simsort`)."""
