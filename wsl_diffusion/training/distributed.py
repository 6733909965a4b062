"""Distributed training that degrades to one process.

Started under `torchrun --nproc_per_node N`, each process reads RANK / WORLD_SIZE / LOCAL_RANK,
joins a process group (gloo on CPU, nccl on GPU), and wraps the denoiser in DDP. Without those
variables everything here is a no-op and the code runs as one plain process.

Data parallelism follows the "global batch, local slice" rule: every rank draws the same global
batch (indices, sigmas, noise) from the same generator and keeps rows rank, rank + W, ... — the
role DistributedSampler plays, but with randomness that does not depend on W, so N processes
take exactly the step one process would with the same global batch (tested).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init() -> DistContext:
    """Join the process group if launched by torchrun; else a single-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device="cuda" if torch.cuda.is_available() else "cpu")
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank,
                       device=f"cuda:{local_rank}" if use_cuda else "cpu")


def wrap(net: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    """DDP-wrap for multi-process runs (gradients averaged over ranks); identity otherwise."""
    if ctx.world_size <= 1:
        return net
    ids = [ctx.local_rank] if ctx.device.startswith("cuda") else None
    return DistributedDataParallel(net, device_ids=ids)


def local_slice(batch: dict[str, torch.Tensor], ctx: DistContext) -> dict[str, torch.Tensor]:
    """This rank's rows of a global batch (every tensor is batch-first)."""
    if ctx.world_size <= 1:
        return batch
    n = next(iter(batch.values())).shape[0]
    if n % ctx.world_size:
        raise ValueError(f"--batch-size {n} must be divisible by the number of processes ({ctx.world_size})")
    return {k: v[ctx.rank::ctx.world_size] for k, v in batch.items()}


def all_reduce_mean(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Mean of a scalar over ranks (for logging and the non-finite guard, so all ranks agree)."""
    if ctx.world_size <= 1:
        return value
    v = value.detach().clone().float()
    dist.all_reduce(v, op=dist.ReduceOp.SUM)
    return v / ctx.world_size
