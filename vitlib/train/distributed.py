"""Data-parallel training under torchrun (nanoGPT's DDP set-up, in one place).

torchrun starts one process per GPU and sets RANK, LOCAL_RANK and WORLD_SIZE. Each process holds
a full model copy, reads its own slice of every global batch, and DDP averages the gradients. A
plain `python` launch is world size 1 and none of this runs. NCCL on CUDA, gloo on the CPU (the
CPU path exists so the multi-process logic can be tested without GPUs).
"""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from vitlib.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    rank: int            # this process's index among all processes
    world_size: int      # number of processes (1 without torchrun)
    device: torch.device

    @property
    def is_main(self):
        """Rank 0: the only process that writes files and prints."""
        return self.rank == 0

    @property
    def enabled(self):
        return self.world_size > 1


def world_size_from_env():
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device="auto"):
    """Join the process group when launched by torchrun (WORLD_SIZE > 1) and pick this process's
    device: cuda:LOCAL_RANK on GPUs. Idempotent; a caller that initialised the group keeps it."""
    world = world_size_from_env()
    dev = resolve_device(device)
    if world == 1:
        return DistInfo(0, 1, dev)
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={world} but this torch build has no torch.distributed")
    if dev.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():  # else CUDA's "invalid device ordinal", mid-start-up
            raise ValueError(f"LOCAL_RANK={local_rank} but this machine has {torch.cuda.device_count()} CUDA "
                             "devices: start at most that many processes per node (--nproc_per_node), "
                             "or pass device='cpu'")
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), dev)


def cleanup():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor, info):
    """Sum `tensor` over all processes, in place; returns it. No-op for one process."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor, info):
    """Element-wise max over all processes, in place; returns it. No-op for one process."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def barrier(info):
    if info.enabled:
        dist.barrier()


def broadcast_error(message, info):
    """Agree on whether any rank failed a check, so that every rank raises rather than some ranks
    waiting for ever in the next collective. Returns the first non-empty message, or None."""
    if not info.enabled:
        return message or None
    messages = [None] * info.world_size
    dist.all_gather_object(messages, message)
    return next((m for m in messages if m), None)
