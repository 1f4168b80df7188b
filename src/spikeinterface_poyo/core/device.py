"""Where tensors go: the one place that chooses between CUDA and the CPU."""

from __future__ import annotations


def resolve_device(requested=None, local_rank: int = 0):
    """The requested device, else this process's GPU when there are GPUs, else the CPU.

    Parameters
    ----------
    requested : str, torch.device or None
        An explicit choice (``"cpu"``, ``"cuda:1"``...); None picks automatically.
    local_rank : int, default: 0
        Under ``torchrun``, the process's rank on its machine picks its GPU.
    """
    import torch

    if requested is not None:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={str(requested)!r} was asked for but CUDA is not available here; use 'cpu'.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")
