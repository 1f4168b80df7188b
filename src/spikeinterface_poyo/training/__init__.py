"""Training: the loop every family uses (:class:`Trainer` over a family's :class:`TrainingTask`),
its configuration, resumable checkpoints, optimisers and schedules, run configurations and
data-parallel training under ``torchrun``."""
