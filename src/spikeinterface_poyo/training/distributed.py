"""Data-parallel training on ``torch.distributed``: what each process needs to know.

Under ``torchrun`` (or any launcher that sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``
and ``MASTER_PORT``) training joins the process group, NCCL on GPUs and gloo on CPUs,
and the trainer wraps the model in ``DistributedDataParallel``. Without those variables the same
code runs in one process and none of this does anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..core.device import resolve_device


@dataclass(frozen=True)
class Distributed:
    """This process's place in the process group (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    created_group: bool = False  # whether we initialised the group (and so should end it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested=None) -> torch.device:
        """The requested device, else this rank's GPU when there are GPUs, else the CPU."""
        return resolve_device(requested, self.local_rank)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def gather(self, obj) -> list:
        """Every rank's ``obj``, in rank order, on every rank (small Python objects only)."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def sum(self, values) -> list[float]:
        """Element-wise sum of a list of floats over ranks."""
        if not self.enabled:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t)
        return t.cpu().tolist()

    def from_main(self, value: float) -> float:
        """Rank 0's value on every rank, so that all ranks take the same decisions."""
        if not self.enabled:
            return float(value)
        return self.gather(float(value))[0]

    def end(self) -> None:
        """Leave the process group we joined, once every rank got here and DDP is gone."""
        if self.created_group and dist.is_initialized():
            import gc

            gc.collect()  # DDP's reducer must go before its process group does
            dist.barrier()
            dist.destroy_process_group()


def init_distributed() -> Distributed:
    """Join the process group described by the environment, if there is one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    created = False
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        dist.init_process_group(backend)
        created = True
    return Distributed(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        created_group=created,
    )


def shard(num_items: int, ctx: Distributed) -> list[int]:
    """The items this rank reads: round-robin when there are enough, else all of them."""
    if num_items < ctx.world_size:
        return list(range(num_items))
    return list(range(ctx.rank, num_items, ctx.world_size))


def with_every_parameter(loss, model):
    """``loss`` plus zero times one entry of every trainable parameter of ``model``: a step
    that leaves some parameters out (another session's stitchers, the behaviour readout in a
    masked step) still gives each a (zero) gradient, as DistributedDataParallel requires of
    every process."""
    return loss + 0.0 * sum(p.view(-1)[0] for p in model.parameters() if p.requires_grad)
