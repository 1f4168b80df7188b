"""A multi-layer perceptron on binned spike-count history."""

from __future__ import annotations

import torch
from torch import nn

from .neural import NeuralDecoder


class _MLP(nn.Module):
    def __init__(self, num_inputs: int, hidden: int, dim_out: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(num_inputs, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLPDecoder(NeuralDecoder):
    """Multi-layer perceptron on binned spike-count history.

    Inputs are the square-root counts of each unit in the ``lags`` bins ending at the
    decoded time (causal), and in the ``leads`` bins after it when asked, standardised per
    unit; targets are standardised per dimension. Two hidden GELU layers with dropout, trained with AdamW and early
    stopping on the last ``val_fraction`` of the training time.

    Parameters
    ----------
    bin_size : float, default: 0.05
        Bin width in seconds.
    lags : int, default: 10
        Number of bins of history (the current bin included).
    hidden : int, default: 256
        Width of the hidden layers.
    dropout : float, default: 0.3
        Dropout after each hidden layer.
    lr : float, default: 1e-3
        AdamW learning rate.
    weight_decay : float, default: 1e-2
        AdamW weight decay.
    batch_size : int, default: 256
        Samples per step.
    max_epochs : int, default: 100
        Most passes over the training samples.
    patience : int, default: 10
        Epochs without a better validation R² before stopping.
    val_fraction : float, default: 0.1
        Last fraction of the training samples (in time) held out for early stopping.
    max_time_s : float or None, default: None
        Wall-clock budget for training; runs cut short by it are no longer reproducible.
    seed : int, default: 0
        Seed of initialisation, shuffling and dropout.
    device : str, torch.device or None
        Defaults to CUDA when available, else CPU.
    session_id : str, default: "session"
        Name of the session it is fitted on.
    leads : int, default: 0
        Bins after the decoded time added to the inputs (look-ahead, for offline comparisons with
        a centred decoder); 0 keeps the decoder causal.

    Attributes
    ----------
    history_ : dict
        Per-epoch ``train_loss`` and ``val_r2``.
    best_epoch_, best_val_r2_, fit_time_s_
        The kept epoch, its validation R² and the training time in seconds.

    Examples
    --------
    >>> train, test = behavior.split(0.7)
    >>> mlp = MLPDecoder(seed=0).fit(sorting, train)
    >>> sip.r2_score(test, mlp.predict(sorting, test.timestamps))["mean"]
    """

    family = "mlp"

    def __init__(
        self,
        bin_size: float = 0.05,
        lags: int = 10,
        hidden: int = 256,
        dropout: float = 0.3,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        batch_size: int = 256,
        max_epochs: int = 100,
        patience: int = 10,
        val_fraction: float = 0.1,
        max_time_s: float | None = None,
        seed: int = 0,
        device=None,
        session_id: str = "session",
        leads: int = 0,
    ):
        super().__init__(**{k: v for k, v in locals().items() if k not in ("self", "__class__")})

    def _network(self, num_units: int, dim_out: int) -> nn.Module:
        return _MLP((self.lags + self.leads) * num_units, self.hidden, dim_out, self.dropout)
