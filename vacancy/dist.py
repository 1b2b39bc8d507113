"""Every torch.distributed call of the project lives here.

Works as a single process when no launcher (torchrun, deepspeed, srun+torchrun) set RANK/WORLD_SIZE.
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist


_cpu_group = None  # a gloo group beside NCCL's, for host-side flags (any_rank)


def setup() -> torch.device:
    """Join the process group if a launcher started us; return this rank's device."""
    global _cpu_group
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
        timeout = datetime.timedelta(minutes=int(os.environ.get("VACANCY_DIST_TIMEOUT_MIN", 30)))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout,
                                device_id=device if device.type == "cuda" else None,
                                **_attempt_store(timeout))
        # host-side flags (any_rank) go over gloo, so checking them never waits for the GPU
        _cpu_group = dist.new_group(backend="gloo") if device.type == "cuda" else None
    return device


def _attempt_store(timeout: datetime.timedelta) -> dict:
    """Under torchrun, a store of this restart attempt's own.

    torchrun's workers share its agent's TCPStore, and a restart (`--max-restarts`) gets the same
    store with no per-attempt prefix: the keys the failed attempt left there (gloo peer addresses,
    barrier counters) sent restarted ranks to dead peers ("Connection refused") or hung them in
    init_process_group. A prefix per attempt keeps each attempt to its own keys."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return {}  # env:// as usual (plain python, srun without torchrun, deepspeed launcher)
    world = int(os.environ["WORLD_SIZE"])
    agent = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                          is_master=False, timeout=timeout)
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return {"store": dist.PrefixStore(f"vacancy/attempt_{attempt}", agent),
            "rank": int(os.environ["RANK"]), "world_size": world}


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def launched() -> bool:
    """Whether this process is in a process group (a launcher started it), even of one rank."""
    return dist.is_initialized()


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


def any_rank(flag: bool) -> bool:
    """Whether `flag` is set on any rank; a collective on host memory (gloo), so it adds no
    device synchronisation to a training step."""
    if not dist.is_initialized():
        return flag
    box = torch.tensor([int(flag)])
    dist.all_reduce(box, op=dist.ReduceOp.MAX, group=_cpu_group)
    return bool(box.item())


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


def on_main(action, *args, errors: tuple = ()):
    """`action(*args)` on rank 0 while the others wait; returns its result on rank 0 (None on the
    others). An exception of `errors` that it raises is raised on every rank, so that all of them
    stop with the same message instead of the others failing in their next collective when rank
    0 leaves."""
    result = error = None
    if is_main():
        try:
            result = action(*args)
        except errors as e:
            error = e
    error = broadcast_object(error)  # also the barrier the others wait in
    if error is not None:
        raise error
    return result


def gather_object(obj) -> list | None:
    """Every rank's picklable `obj`, in rank order, on rank 0 (None elsewhere); over gloo, so a
    GPU job's host-side results do not go through the GPU."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * world_size() if is_main() else None
    dist.gather_object(obj, out, dst=0, group=_cpu_group)
    return out
