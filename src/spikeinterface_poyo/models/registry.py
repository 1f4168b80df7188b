"""Saving and loading models of any family.

:func:`save_model` writes a model folder through :mod:`spikeinterface_poyo.io.models`;
:func:`load_model` reads one and rebuilds the family it names. Families register themselves
when their module is imported; a folder of a family not imported yet makes this module import
every subpackage of ``models/`` once, so a new family needs no line outside its own folder.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from ..io.models import available_models, model_sha256, read_model_folder, resolve_model_path
from .base import FAMILIES, rebuild, save_decoder

__all__ = ["available_models", "discover_families", "load_model", "model_sha256", "save_model"]


def discover_families() -> dict[str, type]:
    """Import every model subpackage, so that each family registers itself; returns the registry."""
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg:
            importlib.import_module(f"{__package__}.{info.name}")
    return dict(FAMILIES)


def save_model(model, path: str | Path) -> Path:
    """Save a trained model (any family, or a fitted estimator) as a folder.

    The folder holds ``config.json`` (family, schema versions, configuration, description and
    the weights' sha256) and ``model.safetensors``. It is written beside its destination and
    renamed into place, fsynced, so an interrupted save never leaves a half-written model.

    Parameters
    ----------
    model : BehaviorDecoder or DecoderEstimator
        The model to save.
    path : str or Path
        Destination folder; replaced if it holds a saved model already.

    Returns
    -------
    Path
        The folder.
    """
    return save_decoder(model, path)


def load_model(path: str | Path, device=None):
    """Load a model saved with :func:`save_model`, or a shipped model by name.

    Parameters
    ----------
    path : str or Path
        The model folder, or the name of a model in :func:`available_models`.
    device : str or torch.device or None
        Where to put a torch model; CUDA when available, else the CPU.

    Returns
    -------
    BehaviorDecoder
        The model of the family the folder names (a ``POYO``, a ``WienerFilter``...), ready to decode.
    """
    path = resolve_model_path(path)
    document, tensors = read_model_folder(path)
    if document["family"] not in FAMILIES:
        discover_families()
    return rebuild(document, tensors, path, device)
