"""Every torch.distributed call of the project lives here.

Works as a single process when no launcher (torchrun, deepspeed, srun+torchrun) set RANK/WORLD_SIZE.
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist


def setup() -> torch.device:
    """Join the process group if a launcher started us; return this rank's device."""
    if "LOCAL_RANK" not in os.environ and "RANK" in os.environ:
        os.environ["LOCAL_RANK"] = "0"
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if "RANK" in os.environ and not dist.is_initialized():
        # A rank that dies is noticed by torchrun at once; this timeout only bounds how long the
        # others wait inside a collective (e.g. while rank 0 writes a large checkpoint).
        minutes = int(os.environ.get("VACANCY_DIST_TIMEOUT_MIN", 30))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=minutes),
                                device_id=device if device.type == "cuda" else None)
    return device


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks, in place and returned."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate the same-shaped tensors of all ranks along dim 0 (rank order)."""
    if not dist.is_initialized():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def broadcast_object(obj):
    """Rank 0's value of a picklable object, on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
