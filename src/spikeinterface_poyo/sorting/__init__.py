"""Reserved for spike sorting learned from simulation: SimSort (issue 20)."""
