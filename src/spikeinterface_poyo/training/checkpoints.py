"""Periodic training checkpoints that a killed run resumes from.

A checkpoint is a folder ``step-00000120/`` holding safetensors files (weights, best
weights so far, optimiser tensors, each rank's torch RNG state) and JSON (loop,
scheduler and sampler state), and last a ``manifest.json`` with the sha256 of every
other file. It is written under a temporary name and renamed into place, so a crash
mid-write leaves no folder that looks complete; on resume a checkpoint whose manifest
or files do not check out is skipped, with a warning, for the previous one.
Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..io.atomic import file_sha256, fsync_file, replace_folder, write_json
from .distributed import Distributed

MANIFEST = "manifest.json"
FORMAT = "spikeinterface-poyo-training-checkpoint"
_NAME = re.compile(r"^step-(\d{8})$")


def flatten_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimiser ``state_dict`` into tensors (for safetensors) and JSON."""
    tensors, plain = {}, {}
    for index, entries in state_dict["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain[f"{index}.{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "values": plain}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], info: dict) -> dict:
    state: dict = {}
    for name, value in [*tensors.items(), *info["values"].items()]:
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": info["param_groups"]}


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, path)
    fsync_file(path)


class TrainingCheckpoints:
    """The checkpoints of one run in ``folder``; keeps the newest ``keep``.

    Parameters
    ----------
    folder : str or Path
        Where checkpoints go (created if missing). Must be shared by all ranks.
    ctx : Distributed
        The process group; rank 0 writes the shared files, every rank its own state.
    keep : int, default: 2
        Complete checkpoints to keep; older ones are deleted after a new one lands.
    """

    def __init__(self, folder, ctx: Distributed, keep: int = 2):
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}.")
        self.folder, self.ctx, self.keep = Path(folder), ctx, keep

    def existing(self) -> list[Path]:
        """Checkpoint folders, newest first (complete or not)."""
        if not self.folder.is_dir():
            return []
        found = [p for p in self.folder.iterdir() if p.is_dir() and _NAME.match(p.name)]
        return sorted(found, key=lambda p: p.name, reverse=True)

    def save(self, step: int, shared: dict, tensors: dict[str, dict], rank_state: dict, rank_tensors: dict) -> Path:
        """Write checkpoint ``step`` atomically.

        ``shared`` (JSON) and ``tensors`` (name -> tensor dict, one safetensors file each)
        are the same on every rank and written by rank 0; ``rank_state`` (JSON) and
        ``rank_tensors`` are this rank's own (sampler and RNG state).
        """
        final = self.folder / f"step-{step:08d}"
        staging = self.folder / f".{final.name}.partial"
        if self.ctx.is_main:
            self.folder.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
        self.ctx.barrier()
        write_json(staging / f"rank-{self.ctx.rank}.json", rank_state)
        _write_tensors(staging / f"rank-{self.ctx.rank}.safetensors", rank_tensors)
        self.ctx.barrier()
        if self.ctx.is_main:
            for name, group in tensors.items():
                _write_tensors(staging / f"{name}.safetensors", group)
            write_json(staging / "state.json", shared)
            files = sorted(p.name for p in staging.iterdir())
            manifest = {
                "format": FORMAT,
                "step": step,
                "world_size": self.ctx.world_size,
                "sha256": {name: file_sha256(staging / name) for name in files},
            }
            write_json(staging / MANIFEST, manifest)  # written last: its presence marks completeness
            replace_folder(staging, final)
            for old in self.existing()[self.keep :]:
                shutil.rmtree(old, ignore_errors=True)
        self.ctx.barrier()
        return final

    def load_latest(self) -> dict | None:
        """The newest checkpoint that checks out, or None when there is none.

        Unreadable or incomplete checkpoints are skipped with a warning naming the
        reason. Returns a dict with ``step``, ``path``, ``shared``, the named tensor
        groups under ``tensors``, and this rank's ``rank_state`` and ``rank_tensors``.
        """
        candidates = self.existing()
        for i, path in enumerate(candidates):
            try:
                return self._read(path)
            except CheckpointMismatch:
                raise
            except Exception as err:  # corrupt, truncated or half-deleted: fall back
                fallback = candidates[i + 1].name if i + 1 < len(candidates) else "the start"
                warnings.warn(
                    f"Training checkpoint {path} is unreadable ({err}); resuming from {fallback} instead.",
                    stacklevel=2,
                )
        return None

    def _read(self, path: Path) -> dict:
        manifest = json.loads((path / MANIFEST).read_text())
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{MANIFEST} is not a {FORMAT}")
        if manifest["world_size"] != self.ctx.world_size:
            raise CheckpointMismatch(
                f"{path} was written by {manifest['world_size']} processes but this run has "
                f"{self.ctx.world_size}; resume with the same number of processes, or start a new run "
                "in an empty checkpoint folder."
            )
        for name, digest in manifest["sha256"].items():
            if file_sha256(path / name) != digest:
                raise ValueError(f"{name} does not match its sha256 in {MANIFEST}")
        tensors = {
            p.name.removesuffix(".safetensors"): load_file(p)
            for p in path.glob("*.safetensors")
            if not p.name.startswith("rank-")
        }
        return {
            "step": int(manifest["step"]),
            "path": path,
            "shared": json.loads((path / "state.json").read_text()),
            "tensors": tensors,
            "rank_state": json.loads((path / f"rank-{self.ctx.rank}.json").read_text()),
            "rank_tensors": load_file(path / f"rank-{self.ctx.rank}.safetensors"),
        }


class CheckpointMismatch(ValueError):
    """A readable checkpoint that belongs to a different run set-up."""
