"""A gated recurrent network run over binned spike-count history."""

from __future__ import annotations

import torch
from torch import nn

from .neural import NeuralDecoder


class _GRU(nn.Module):
    def __init__(self, num_units: int, hidden: int, dim_out: int, dropout: float, bidirectional: bool = False,
                 read_bin: int = -1):  # fmt: skip
        super().__init__()
        self.input_dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(num_units, hidden, batch_first=True, bidirectional=bidirectional)
        self.bidirectional, self.read_bin = bidirectional, read_bin
        self.readout = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden * (1 + bidirectional), dim_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bidirectional:  # both directions' states at the bin ending at the decoded time
            out, _ = self.gru(self.input_dropout(x))  # (B, bins, 2 * hidden)
            return self.readout(out[:, self.read_bin])
        _, last = self.gru(self.input_dropout(x))  # last: (1, B, hidden), the state after the newest bin
        return self.readout(last[0])


class GRUDecoder(NeuralDecoder):
    """Gated recurrent network run over binned spike-count history.

    The GRU reads the standardised square-root counts of the ``lags`` bins ending at
    the decoded time, oldest first (causal), and a linear readout maps its last state
    to the standardised behaviour. With ``leads`` it also reads that many bins after the
    decoded time; with ``bidirectional=True`` a second GRU runs from the newest bin back, and
    the readout takes both directions' states at the bin ending at the decoded time (the
    forward one has read the history, the backward one the look-ahead). Trained with AdamW and
    early stopping on the last ``val_fraction`` of the training time.

    Parameters
    ----------
    bin_size : float, default: 0.05
        Bin width in seconds.
    lags : int, default: 10
        Number of bins the GRU runs over (the current bin included).
    hidden : int, default: 64
        Size of the GRU state.
    dropout : float, default: 0.2
        Dropout on the inputs and before the readout.
    lr : float, default: 3e-3
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
    bidirectional : bool, default: False
        Run the GRU both ways over the bins (useful with ``leads``).

    Attributes
    ----------
    history_ : dict
        Per-epoch ``train_loss`` and ``val_r2``.
    best_epoch_, best_val_r2_, fit_time_s_
        The kept epoch, its validation R² and the training time in seconds.
    """

    family = "gru"

    def __init__(
        self,
        bin_size: float = 0.05,
        lags: int = 10,
        hidden: int = 64,
        dropout: float = 0.2,
        lr: float = 3e-3,
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
        bidirectional: bool = False,
    ):
        super().__init__(**{k: v for k, v in locals().items() if k not in ("self", "__class__")})

    def _network(self, num_units: int, dim_out: int) -> nn.Module:
        read_bin = max(self.lags - 1, 0)  # the bin ending at the decoded time
        return _GRU(num_units, self.hidden, dim_out, self.dropout, bool(self.bidirectional), read_bin)
