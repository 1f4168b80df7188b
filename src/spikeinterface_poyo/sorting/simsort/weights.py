"""SimSort's detector and embedder saved together: one model folder (safetensors beside a JSON
config, :mod:`spikeinterface_poyo.io.models`), with the sampling rates the pair was trained on."""

from __future__ import annotations

from pathlib import Path

from ...io.models import read_model_folder, write_model_folder
from .detector import SpikeDetector
from .embedder import WaveformEmbedder

FAMILY = "simsort"
#: The pair shipped with the package, trained on its own simulations (recipe.json beside it).
SHIPPED = Path(__file__).resolve().parent / "pretrained" / "simsort_tetrode"


def save_simsort(path, detector: SpikeDetector, embedder: WaveformEmbedder, sampling_frequencies, chosen: dict,
                 meta=None) -> Path:  # fmt: skip
    """Write the pair to the folder ``path`` (atomically; an existing other folder is refused),
    with the sampling rates it was trained on and the thresholds ``chosen`` on validation
    simulations (:func:`~.selection.choose_params`)."""
    tensors = {f"detector.{k}": v for k, v in detector.state_dict().items()}
    tensors |= {f"embedder.{k}": v for k, v in embedder.state_dict().items()}
    config = {"detector": detector.config, "embedder": embedder.config, "chosen": dict(chosen),
              "sampling_frequencies": sorted(float(f) for f in sampling_frequencies)}  # fmt: skip
    return write_model_folder(path, family=FAMILY, family_version=1, model_class="SimSort", config=config,
                              meta=meta or {}, tensors=tensors)  # fmt: skip


def load_simsort(path=None, device=None) -> tuple[SpikeDetector, WaveformEmbedder, dict]:
    """The detector, the embedder (eval mode, on ``device``) and the config of a saved pair;
    ``path`` None loads the shipped pair."""
    document, tensors = read_model_folder(SHIPPED if path is None else path)
    if document["family"] != FAMILY:
        raise ValueError(f"{path} holds a {document['family']!r} model, not SimSort's detector and embedder.")
    config = document["config"]
    models = []
    for name, cls in (("detector", SpikeDetector), ("embedder", WaveformEmbedder)):
        model = cls(**config[name])
        model.load_state_dict({k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + ".")})
        models.append(model.to(device or "cpu").eval())
    return models[0], models[1], config
