"""Importing POYO checkpoints written by torch_brain's Lightning trainer (weights only, never
unpickling anything else)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..base import load_state_checked
from .model import POYO


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
    model = POYO.build(architecture, vocabs["unit_emb"], vocabs["session_emb"])
    load_state_checked(model, state, str(path))
    model.meta = {"training": {"source": "torch_brain", "checkpoint": str(path)}}
    return model.to_device(device)
