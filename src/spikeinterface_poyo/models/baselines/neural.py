"""What the MLP and the GRU share: standardised square-root count history, and training
through the package's :class:`~spikeinterface_poyo.training.trainer.Trainer` on a task that
passes over the training samples once per epoch."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ...core.binning import binned_counts
from ...core.device import resolve_device
from ...core.metrics import r2_per_dimension
from ...training.config import TrainingConfig
from ...training.trainer import Trainer
from ..base import load_state_checked
from .common import BaselineDecoder, validation_cut


class SampleTask:
    """Mini-batches of a shuffled pass over (x, z) each epoch; validation R² on held-out samples."""

    score_name = "r2"

    def __init__(self, network, x, z, x_val, z_val, batch_size: int, forward_all):
        self.model, self.x, self.z, self.x_val, self.z_val = network, x, z, x_val, z_val
        self.batch_size, self.forward_all = batch_size, forward_all
        self.steps_per_epoch = math.ceil(len(x) / batch_size)
        self.order = np.arange(len(x))

    def start_epoch(self, rng) -> None:
        self.order = rng.permutation(len(self.x))

    def loss(self, net, rng, step_in_epoch) -> torch.Tensor:
        index = torch.from_numpy(self.order[step_in_epoch * self.batch_size : (step_in_epoch + 1) * self.batch_size])
        index = index.to(self.x.device)
        return nn.functional.mse_loss(net(self.x[index]), self.z[index])

    def validate(self) -> tuple[float, int]:
        return float(np.nanmean(r2_per_dimension(self.z_val, self.forward_all(self.x_val)))), 1

    def identity(self) -> dict:
        return {"samples": len(self.x), "inputs": list(self.x.shape[1:])}

    def sampler_state(self) -> dict:
        return {"order": self.order.tolist()}

    def load_sampler_state(self, state: dict) -> None:
        if "order" in state:
            self.order = np.asarray(state["order"], dtype=np.int64)


class NeuralDecoder(BaselineDecoder):
    """Shared fitting of the neural baselines: features, standardisation, training.

    Subclasses define :meth:`_network`, which maps (B, lags + leads, U) standardised inputs, oldest
    bin first, to (B, D) standardised behaviour. Training is AdamW at a constant learning rate
    with early stopping on the validation R² of the last ``val_fraction`` of the samples.
    """

    #: the training task (a subclass can change the loss)
    task_class = SampleTask

    def __init__(self, **params):
        for name, value in params.items():  # scikit-learn's convention: settings under their own names
            setattr(self, name, value)

    def _network(self, num_units: int, dim_out: int) -> nn.Module:
        raise NotImplementedError

    def _build_network(self, x_train: torch.Tensor, dim_out: int) -> nn.Module:
        """The network to train, given the standardised training inputs (a subclass can derive
        fixed parts of it from them)."""
        return self._network(x_train.shape[-1], dim_out)

    def _history(self, tokens, timestamps: np.ndarray) -> np.ndarray:
        """(T, lags + leads, U) square-root counts, oldest bin first (sqrt evens out Poisson variance)."""
        return np.sqrt(binned_counts(tokens, timestamps, self.bin_size, self.lags, self.leads))

    def _input_scale(self, train: np.ndarray) -> np.ndarray:
        """(U,) what the centred training inputs are divided by: each unit's spread."""
        return train.std(axis=(0, 1)) + 1e-3  # silent units stay at 0 rather than blowing up

    def _task_settings(self) -> dict:
        """Keyword arguments of the training task beyond the samples."""
        return {}

    def _standardise(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray((x - self.x_mean_) / self.x_scale_, dtype=np.float32))

    @torch.no_grad()
    def _forward_all(self, x: torch.Tensor, chunk: int = 4096) -> np.ndarray:
        self.network_.eval()
        out = [self.network_(x[i : i + chunk].to(self.device_)).float().cpu() for i in range(0, len(x), chunk)]
        return torch.cat(out).numpy().astype(np.float64)

    def training_config(self) -> TrainingConfig:
        """The baseline's settings as the training loop's configuration."""
        return TrainingConfig(
            seed=self.seed,
            max_epochs=self.max_epochs,
            max_time_s=self.max_time_s,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            schedule="constant",
            clip_grad_norm=None,
            unit_dropout=0.0,
            val_fraction=self.val_fraction,
            patience=self.patience,
            progress_bar=False,
        )

    def _fit_arrays(self, tokens, t, y) -> None:
        cut = validation_cut(len(t), self.val_fraction)
        raw = self._history(tokens, t)
        # statistics of the training part only, as POYO's, so validation stays unseen
        self.x_mean_ = raw[:cut].mean(axis=(0, 1))  # per unit, pooled over lags
        self.x_scale_ = self._input_scale(raw[:cut])
        x = self._standardise(raw)
        z = self._encode_targets(y, cut)

        self.device_ = resolve_device(self.device)
        torch.manual_seed(self.seed)
        self.network_ = self._build_network(x[:cut], self._output_width()).to(self.device_)
        task = self.task_class(
            self.network_, x[:cut].to(self.device_), z[:cut].to(self.device_), x[cut:], z[cut:].numpy(),
            self.batch_size, self._forward_all, **self._task_settings(),
        )  # fmt: skip
        record = Trainer(task, self.training_config()).run()
        self.history_ = record["history"]
        self.best_epoch_ = record["best_epoch"]
        setattr(self, f"best_val_{task.score_name}_", record[f"best_val_{task.score_name}"])
        self.fit_time_s_ = record["train_time_s"]

    # ---- targets: standardised behaviour (a classifier encodes classes instead) ---------------
    def _encode_targets(self, y: np.ndarray, cut: int) -> torch.Tensor:
        """(T, D) behaviour -> what the network is trained to output; statistics of ``y[:cut]`` only."""
        self.y_mean_ = y[:cut].mean(axis=0)
        self.y_scale_ = np.where(y[:cut].std(axis=0) > 0, y[:cut].std(axis=0), 1.0)
        return torch.from_numpy(((y - self.y_mean_) / self.y_scale_).astype(np.float32))

    def _decode_outputs(self, z: np.ndarray) -> np.ndarray:
        """The network's (T, width) outputs -> (T, D) behaviour."""
        return z * self.y_scale_ + self.y_mean_

    def _output_width(self) -> int:
        return len(self.y_mean_)

    def _target_arrays(self) -> dict:
        return {"y_mean": self.y_mean_, "y_scale": self.y_scale_}

    def _restore_targets(self, arrays: dict) -> None:
        self.y_mean_, self.y_scale_ = arrays["y_mean"], arrays["y_scale"]

    def _predict_arrays(self, tokens, timestamps) -> np.ndarray:
        return self._decode_outputs(self._forward_all(self._standardise(self._history(tokens, timestamps))))

    def _fitted_arrays(self) -> dict:
        arrays = {f"network.{k}": v for k, v in self.network_.state_dict().items()}
        arrays.update(x_mean=self.x_mean_, x_scale=self.x_scale_, **self._target_arrays())
        return arrays

    def _restore_arrays(self, arrays: dict) -> None:
        self.x_mean_, self.x_scale_ = arrays["x_mean"], arrays["x_scale"]
        self._restore_targets(arrays)
        self.device_ = resolve_device(self.device)
        self.network_ = self._network(len(self.x_mean_), self._output_width())
        state = {k.removeprefix("network."): torch.from_numpy(v) for k, v in arrays.items() if k.startswith("network.")}
        load_state_checked(self.network_, state, f"the saved {type(self).__name__}")
        self.network_.to(self.device_).eval()

    def to_device(self, device=None):
        """Move the network to ``device`` (CUDA when available, else the CPU)."""
        self.device_ = resolve_device(device)
        self.network_.to(self.device_)
        return self
