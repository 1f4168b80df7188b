"""Saving and loading models: safetensors weights beside a JSON config, never pickle.

A saved model is a folder::

    decoder/
        config.json        architecture, vocabularies, behaviour description, provenance,
                           and the sha256 of the weights
        model.safetensors  the state dict
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import __version__
from .model import POYO

FORMAT = "spikeinterface-poyo"
SCHEMA_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
#: Models shipped inside the package, loadable by name with :func:`load_model`.
PRETRAINED_DIR = Path(__file__).parent / "pretrained"


def available_models() -> list[str]:
    """Names of the pretrained models shipped with the package."""
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / CONFIG_FILE).exists())


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A saved model folder, or the folder of a shipped model of that name."""
    path = Path(name_or_path)
    if (path / CONFIG_FILE).exists() or path.exists():
        return path
    if str(name_or_path) in available_models():
        return PRETRAINED_DIR / str(name_or_path)
    raise FileNotFoundError(
        f"No saved model at {path}, and no shipped model of that name (shipped: {available_models() or 'none'})."
    )


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_sha256(path: str | Path) -> str:
    """Identity of a saved model: the sha256 of its weights file."""
    return file_sha256(Path(path) / WEIGHTS_FILE)


def _tensors(model: POYO) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save_model(model: POYO, path: str | Path) -> Path:
    """Save a model as a folder holding ``config.json`` and ``model.safetensors``.

    The folder is written beside its destination and renamed into place, so an
    interrupted save never leaves a half-written model.

    Parameters
    ----------
    model : POYO
        The model to save.
    path : str or Path
        Destination folder; replaced if it holds a saved model already.

    Returns
    -------
    Path
        The folder.
    """
    path = Path(path)
    if path.exists() and not (path / CONFIG_FILE).exists():
        raise FileExistsError(f"{path} exists and is not a saved model; choose another path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        save_file(_tensors(model), staging / WEIGHTS_FILE)
        config = {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "package_version": __version__,
            "architecture": model.config,
            "unit_vocab": model.unit_emb.vocab,
            "session_vocab": model.session_emb.vocab,
            "meta": model.meta,
            "weights_sha256": file_sha256(staging / WEIGHTS_FILE),
        }
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        _default_permissions(staging)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / "model")
            os.replace(staging, path)
            _remove_tree(old)
        else:
            os.replace(staging, path)
    except BaseException:
        _remove_tree(staging)
        raise
    return path


def _default_permissions(folder: Path) -> None:
    """Give a folder made by ``mkdtemp`` (0700) and its files the modes the umask allows."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for file in folder.iterdir():
        file.chmod(0o666 & ~umask)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _read_config(path: Path) -> dict:
    config_path = path / CONFIG_FILE
    if not config_path.exists():
        raise FileNotFoundError(f"No saved model at {path}: expected {CONFIG_FILE} and {WEIGHTS_FILE} in that folder.")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path} is not valid JSON ({err}); the model folder is damaged.") from None
    if config.get("format") != FORMAT:
        raise ValueError(f"{config_path} is not a {FORMAT} model config.")
    version = config.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(
            f"{path} uses checkpoint schema {version}, this package reads schema {SCHEMA_VERSION}; "
            f"load it with the spikeinterface-poyo version that wrote it ({config.get('package_version')}) "
            "or retrain."
        )
    return config


def build_model(architecture: dict, unit_vocab: list[str], session_vocab: list[str]) -> POYO:
    """An untrained model with a given architecture and vocabularies."""
    model = POYO(**architecture)
    model.unit_emb.set_vocab(unit_vocab)
    model.session_emb.set_vocab(session_vocab)
    return model


def load_state_checked(model: POYO, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` with a clear error naming the mismatched tensors."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        details = "; ".join(
            part
            for part in (
                f"missing {missing[:5]}" if missing else "",
                f"unexpected {unexpected[:5]}" if unexpected else "",
                f"wrong shapes {wrong[:5]}" if wrong else "",
            )
            if part
        )
        raise ValueError(f"The weights in {source} do not match the model they claim to be: {details}.")
    model.load_state_dict(state)


def load_model(path: str | Path, device=None) -> POYO:
    """Load a model saved with :func:`save_model`, or a shipped model by name.

    Parameters
    ----------
    path : str or Path
        The model folder, or the name of a model in :func:`available_models`.
    device : str or torch.device or None
        Where to put the model; defaults to CUDA when available, else CPU.

    Returns
    -------
    POYO
        The model, in eval mode.
    """
    from .training import default_device

    path = resolve_model_path(path)
    config = _read_config(path)
    weights = path / WEIGHTS_FILE
    if not weights.exists():
        raise FileNotFoundError(f"{weights} is missing; the model folder is incomplete.")
    if file_sha256(weights) != config.get("weights_sha256"):
        raise ValueError(
            f"{weights} does not match the checksum in its {CONFIG_FILE}: the weights were changed or "
            "damaged after saving. Use the original files."
        )
    model = build_model(config["architecture"], config["unit_vocab"], config["session_vocab"])
    load_state_checked(model, load_file(str(weights)), str(weights))
    model.meta = config.get("meta", {})
    return model.to(torch.device(device) if device else default_device()).eval()


def load_torch_brain_checkpoint(path: str | Path, device=None) -> POYO:
    """Import a POYO checkpoint written by torch_brain's Lightning trainer.

    The file is read with ``torch.load(..., weights_only=True)``, which refuses to run
    arbitrary code; the ``model.`` prefix is stripped from the weights and the
    architecture is rebuilt from ``hyper_parameters``.

    Parameters
    ----------
    path : str or Path
        The ``.ckpt`` file.
    device : str or torch.device or None
        Where to put the model.

    Returns
    -------
    POYO
        The model, with torch_brain's unit and session vocabularies. Its outputs are in
        torch_brain's units (no target statistics are known).
    """
    from .training import default_device

    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # an unsafe or foreign pickle: say so rather than run it
        raise ValueError(
            f"{path} could not be read as a weights-only torch_brain checkpoint ({err}). "
            "Only checkpoints holding plain tensors and hyper-parameters are accepted."
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise ValueError(f"{path} is not a Lightning checkpoint: it needs 'state_dict' and 'hyper_parameters'.")
    hparams = dict(ckpt["hyper_parameters"])
    hparams = dict(hparams.get("model", hparams))
    hparams.pop("_target_", None)
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    vocabs = {}
    for name in ("unit_emb", "session_emb"):
        vocab = state.pop(f"{name}.vocab", None)
        if vocab is None:
            raise ValueError(f"{path} holds no {name}.vocab; it is not a torch_brain POYO checkpoint.")
        vocabs[name] = [word for word, _ in sorted(vocab.items(), key=lambda item: item[1])]
    architecture = {k: v for k, v in hparams.items() if k in POYO.__init__.__kwdefaults__ or k == "dim_out"}
    architecture["dim_out"] = int(state["readout.weight"].shape[0])
    model = build_model(architecture, vocabs["unit_emb"], vocabs["session_emb"])
    load_state_checked(model, state, str(path))
    model.meta = {"training": {"source": "torch_brain", "checkpoint": str(path)}}
    return model.to(torch.device(device) if device else default_device()).eval()
