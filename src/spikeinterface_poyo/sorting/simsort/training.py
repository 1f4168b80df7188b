"""Training SimSort's detector and embedder on simulated tetrodes, and running the detector
over a whole recording."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ...training.config import TrainingConfig
from ...training.trainer import Trainer
from .detector import SpikeDetector, augment, detection_loss
from .embedder import (
    WaveformEmbedder,
    denoise_snippets,
    extract_snippets,
    sample_triplets,
    snippet_samples,
    triplet_loss,
)
from .preprocessing import preprocess
from .simulation import TetrodeSettings, simulate_tetrode, spike_labels

#: Samples either side of a true peak that the detector is taught to call a spike, in ms.
LABEL_HALF_WIDTH_MS = 0.2
#: Samples per window the detector reads.
WINDOW_SAMPLES = 256
#: Fixed seed of the validation windows, so every epoch scores the same ones.
VALIDATION_SEED = 20_26


#: Largest offset (samples) between a training snippet's centre and its spike's true peak: the
#: embedder learns from snippets placed as imprecisely as a detector places them.
SNIPPET_JITTER = 2


def simulated_examples(settings: list[TetrodeSettings], progress_bar: bool = False) -> list[dict]:
    """What the detector and the embedder learn from, per simulated recording.

    Returns
    -------
    list of dict
        ``traces`` (N, 4) float32, preprocessed; ``labels`` (N,) bool, :data:`LABEL_HALF_WIDTH_MS`
        around each true peak; ``peaks`` (M,) and ``units`` (M,) the true spikes' samples and
        unit indices; ``sampling_frequency``.
    """
    out = []
    for s in tqdm(settings, desc="simulating", disable=not progress_bar):
        recording, sorting = simulate_tetrode(s)
        traces = preprocess(recording).get_traces().astype(np.float32)
        half_width = int(round(LABEL_HALF_WIDTH_MS * 1e-3 * s.sampling_frequency))
        spikes = sorting.to_spike_vector()
        out.append(dict(traces=traces, labels=spike_labels(sorting, len(traces), half_width),
                        peaks=spikes["sample_index"], units=spikes["unit_index"],
                        sampling_frequency=s.sampling_frequency))  # fmt: skip
    return out


def _windows(examples, picks, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, T, C) traces and (B, T) labels of the (recording, offset) ``picks``."""
    traces = np.stack([examples[r]["traces"][o : o + window] for r, o in picks])
    labels = np.stack([examples[r]["labels"][o : o + window] for r, o in picks])
    return traces, labels


def _random_picks(examples, count: int, window: int, rng) -> list[tuple[int, int]]:
    lengths = np.array([len(e["traces"]) - window for e in examples], dtype=float)
    recordings = rng.choice(len(examples), size=count, p=lengths / lengths.sum())
    return [(int(r), int(rng.integers(0, lengths[r] + 1))) for r in recordings]


class _SimulatedTask:
    """What the two tasks share: a model, simulated recordings, and no sampler state to keep
    (each batch is drawn afresh from the trainer's generator)."""

    def __init__(self, model, train, validation, config: TrainingConfig):
        if not train or not validation:
            raise ValueError("Need at least one training and one validation recording.")
        self.model, self.train, self.batch_size = model, train, config.batch_size
        self.steps_per_epoch = max(1, (config.windows_per_epoch or 16 * config.batch_size) // config.batch_size)
        self.identity_ = {"model": model.config, "train_samples": int(sum(len(e["traces"]) for e in train))}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def start_epoch(self, rng) -> None:
        pass

    def identity(self) -> dict:
        return self.identity_

    def sampler_state(self) -> dict:
        return {}

    def load_sampler_state(self, state: dict) -> None:
        pass


class DetectorTask(_SimulatedTask):
    """Random windows of simulated recordings, augmented, scored by weighted cross-entropy.

    Parameters
    ----------
    model : SpikeDetector
    train, validation : list of dict
        From :func:`simulated_examples`; validation scores a fixed set of windows.
    config : TrainingConfig
        Batch size and epoch length (``windows_per_epoch``, default 16 batches).
    window : int
        Samples per window.
    """

    score_name = "neg_bce"

    def __init__(self, model, train, validation, config: TrainingConfig, window: int = WINDOW_SAMPLES):
        super().__init__(model, train, validation, config)
        if min(len(e["traces"]) for e in train + validation) <= window:
            raise ValueError(f"Every recording must be longer than the detector's window of {window} samples.")
        self.window = window
        positive = np.mean(np.concatenate([e["labels"] for e in train]))
        self.pos_weight = float(np.clip((1 - positive) / max(positive, 1e-6), 1.0, 50.0))
        rng = np.random.default_rng(VALIDATION_SEED)
        self.validation = _windows(validation, _random_picks(validation, 16 * config.batch_size, window, rng), window)
        self.identity_["window"] = window

    def loss(self, net, rng, step_in_epoch) -> torch.Tensor:
        traces, labels = _windows(self.train, _random_picks(self.train, self.batch_size, self.window, rng), self.window)
        logits = net(torch.from_numpy(augment(traces, rng)).to(self.device))
        return detection_loss(logits, torch.from_numpy(labels).to(self.device), self.pos_weight)

    def validate(self) -> tuple[float, int]:
        traces, labels = self.validation
        total = 0.0
        for b in range(0, len(traces), self.batch_size):
            logits = self.model(torch.from_numpy(traces[b : b + self.batch_size]).to(self.device))
            batch = torch.from_numpy(labels[b : b + self.batch_size]).to(self.device)
            total -= float(detection_loss(logits, batch, self.pos_weight)) * len(batch)
        return total, len(traces)


def embedder_snippets(example: dict, rng: np.random.Generator, rank: int = 5) -> np.ndarray:
    """(M, S, C) denoised snippets of a recording's true spikes, each placed up to
    :data:`SNIPPET_JITTER` samples off its peak."""
    before, after = snippet_samples(example["sampling_frequency"])
    jitter = rng.integers(-SNIPPET_JITTER, SNIPPET_JITTER + 1, len(example["peaks"]))
    return denoise_snippets(extract_snippets(example["traces"], example["peaks"] + jitter, before, after), rank)


class EmbedderTask(_SimulatedTask):
    """Triplets of snippets from one simulated recording per batch (positive: the anchor's
    unit; negative: another unit of the same recording), scored by the triplet loss.

    Parameters
    ----------
    model : WaveformEmbedder
    train, validation : list of dict
        From :func:`simulated_examples` (recordings with at least two units).
    config : TrainingConfig
        Batch size (triplets per batch) and epoch length.
    margin : float
        The triplet loss's margin.
    """

    score_name = "neg_triplet"

    def __init__(self, model, train, validation, config: TrainingConfig, margin: float = 0.2):
        super().__init__(model, train, validation, config)
        self.margin = margin
        rng = np.random.default_rng(VALIDATION_SEED)
        self.snippets = [embedder_snippets(e, rng) for e in train]
        self.validation = []
        for e in validation:
            snippets = embedder_snippets(e, rng)
            self.validation.append((snippets, sample_triplets(e["units"], 8 * config.batch_size, rng)))

    def _loss(self, net, snippets, triplets) -> torch.Tensor:
        flat = torch.from_numpy(snippets[triplets.reshape(-1)]).to(self.device)
        anchor, positive, negative = net(flat).view(len(triplets), 3, -1).unbind(1)
        return triplet_loss(anchor, positive, negative, self.margin)

    def loss(self, net, rng, step_in_epoch) -> torch.Tensor:
        k = int(rng.integers(len(self.train)))
        snippets = self.snippets[k]
        noisy = snippets + rng.normal(scale=rng.uniform(0.0, 0.3), size=snippets.shape).astype(np.float32)
        return self._loss(net, noisy, sample_triplets(self.train[k]["units"], self.batch_size, rng))

    def validate(self) -> tuple[float, int]:
        total = sum(-float(self._loss(self.model, s, t)) * len(t) for s, t in self.validation)
        return total, sum(len(t) for _, t in self.validation)


def _train(model_class, task_class, train, validation, preset, config, kwargs):
    """A fresh ``model_class`` of ``preset`` trained by ``task_class`` on the Trainer; the
    weights that validate best are kept, the run is recorded in ``model.meta``."""
    config, architecture = TrainingConfig.split_kwargs(config, kwargs, defaults=dict(batch_size=32, lr=1e-3))
    torch.manual_seed(config.seed)
    model = model_class.from_preset(preset, **architecture)
    record = Trainer(task_class(model, train, validation, config), config).run()
    model.meta = {"training": {"preset": preset, "settings": config.hyperparameters(),
                               **{k: v for k, v in record.items() if k != "history"}}}  # fmt: skip
    return model.eval()


def train_detector(train, validation, preset: str = "cpu", config: TrainingConfig | None = None,
                   **kwargs) -> SpikeDetector:  # fmt: skip
    """A :class:`SpikeDetector` trained on simulated examples (:func:`simulated_examples`).

    ``config`` (and keyword arguments that are :class:`TrainingConfig` fields) sets budgets,
    batch and learning rate; the other keywords change the preset's architecture.
    """
    return _train(SpikeDetector, DetectorTask, train, validation, preset, config, kwargs)


def train_embedder(train, validation, preset: str = "cpu", config: TrainingConfig | None = None,
                   **kwargs) -> WaveformEmbedder:  # fmt: skip
    """A :class:`WaveformEmbedder` trained with the triplet loss on simulated examples; the
    keywords as :func:`train_detector`'s."""
    return _train(WaveformEmbedder, EmbedderTask, train, validation, preset, config, kwargs)


@torch.no_grad()
def spike_probability(detector: SpikeDetector, traces: np.ndarray, window: int = WINDOW_SAMPLES,
                      margin: int = 32, batch_size: int = 64, progress_bar: bool = False) -> np.ndarray:  # fmt: skip
    """(N,) spike probability of every sample of preprocessed (N, C) ``traces``.

    Windows of ``window`` samples overlap by ``2 * margin``; each sample is read from the window
    where it lies furthest from an edge (its middle part), so no sample is judged at a window's edge.
    """
    n, step = len(traces), window - 2 * margin
    if step <= 0:
        raise ValueError(f"window ({window}) must exceed twice the margin ({margin}).")
    padded = np.pad(traces, ((margin, window + margin), (0, 0))).astype(np.float32)
    starts = np.arange(0, n, step)
    out = np.empty(len(starts) * step, dtype=np.float32)
    device = next(detector.parameters()).device
    for b in tqdm(range(0, len(starts), batch_size), desc="detecting", disable=not progress_bar):
        batch = np.stack([padded[s : s + window] for s in starts[b : b + batch_size]])
        probability = torch.sigmoid(detector(torch.from_numpy(batch).to(device))).cpu().numpy()
        out[b * step : (b + len(batch)) * step] = probability[:, margin : margin + step].reshape(-1)
    return out[:n]
