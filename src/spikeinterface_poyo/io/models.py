"""Model folders: safetensors weights beside a JSON config, never pickle.

A saved model is a folder::

    decoder/
        config.json        format, schema version, the model's family and class, its
                           configuration, its description (behaviour, sessions, training
                           record), and the sha256 of the weights
        model.safetensors  the tensors

This module reads and writes that layout and knows nothing of any family: rebuilding a model
from a folder is :mod:`spikeinterface_poyo.models.registry`'s job.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .._version import __version__
from .atomic import atomic_folder, file_sha256, write_json

FORMAT = "spikeinterface-poyo"
#: 2 adds ``family``, ``family_version``, ``model_class`` and ``config``; schema 1 held POYO only.
SCHEMA_VERSION = 2
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
#: Models shipped inside the package, loadable by name.
PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"


def available_models() -> list[str]:
    """Names of the pretrained models shipped with the package."""
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / CONFIG_FILE).exists())


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A saved model folder, or the folder of a shipped model of that name."""
    path = Path(name_or_path)
    if path.exists():
        return path
    if str(name_or_path) in available_models():
        return PRETRAINED_DIR / str(name_or_path)
    raise FileNotFoundError(
        f"No saved model at {path}, and no shipped model of that name (shipped: {available_models() or 'none'})."
    )


def model_sha256(path: str | Path) -> str:
    """Identity of a saved model: the sha256 of its weights file."""
    return file_sha256(Path(path) / WEIGHTS_FILE)


def _as_tensor(value) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value
    return tensor.detach().cpu().contiguous()


def write_model_folder(
    path: str | Path,
    *,
    family: str,
    family_version: int,
    model_class: str,
    config: dict,
    meta: dict,
    tensors: dict,
) -> Path:
    """Write a model folder atomically (a staging folder renamed into place, fsynced).

    An interrupted save never leaves a half-written model, and a folder that exists and is
    not a saved model is never replaced.
    """
    path = Path(path)
    if path.exists() and not (path / CONFIG_FILE).exists():
        raise FileExistsError(f"{path} exists and is not a saved model; choose another path.")
    with atomic_folder(path) as staging:
        save_file({k: _as_tensor(v) for k, v in tensors.items()}, staging / WEIGHTS_FILE)
        document = {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "package_version": __version__,
            "family": family,
            "family_version": int(family_version),
            "model_class": model_class,
            "config": config,
            "meta": meta,
            "weights_sha256": file_sha256(staging / WEIGHTS_FILE),
        }
        write_json(staging / CONFIG_FILE, document, indent=2)
    return path


def read_model_config(path: str | Path) -> dict:
    """The checked ``config.json`` of a model folder, upgraded to the current schema."""
    path = Path(path)
    config_path = path / CONFIG_FILE
    if not config_path.exists():
        raise FileNotFoundError(f"No saved model at {path}: expected {CONFIG_FILE} and {WEIGHTS_FILE} in that folder.")
    try:
        document = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path} is not valid JSON ({err}); the model folder is damaged.") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"{config_path} is not a {FORMAT} model config.")
    version = document.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ValueError(
            f"{path} was written with model-folder schema {version} by spikeinterface-poyo "
            f"{document.get('package_version')}; this version ({__version__}) reads schemas up to {SCHEMA_VERSION}. "
            "Upgrade spikeinterface-poyo to load it."
        )
    if version == 1:  # POYO before model families: architecture and vocabularies at the top
        document = {
            **document,
            "family": "poyo",
            "family_version": 1,
            "model_class": "POYO",
            "config": {k: document[k] for k in ("architecture", "unit_vocab", "session_vocab")},
        }
    if "family" not in document:
        raise ValueError(f"{config_path} names no model family; the model folder is damaged.")
    return document


def read_model_folder(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The checked config and the tensors of a model folder (weights verified by sha256)."""
    path = Path(path)
    document = read_model_config(path)
    weights = path / WEIGHTS_FILE
    if not weights.exists():
        raise FileNotFoundError(f"{weights} is missing; the model folder is incomplete.")
    if file_sha256(weights) != document.get("weights_sha256"):
        raise ValueError(
            f"{weights} does not match the checksum in its {CONFIG_FILE}: the weights were changed or "
            "damaged after saving. Use the original files."
        )
    return document, load_file(str(weights))
