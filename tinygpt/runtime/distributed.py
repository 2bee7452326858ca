"""DDP through torchrun: process-group setup from the environment, and the few collectives the loop needs.

A plain ``python -m tinygpt.train`` is a world of one: every helper here then does nothing, so the loop
has a single code path.
"""

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE_PROCESS = World()


def init_world(device_name: str, timeout_s: float) -> World:
    """Join the process group torchrun describes in RANK / LOCAL_RANK / WORLD_SIZE (nccl on CUDA, gloo on
    CPU); ``timeout_s`` bounds every collective, so a dead rank fails the job instead of hanging it."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return SINGLE_PROCESS
    world = World(rank=int(os.environ["RANK"]), local_rank=int(os.environ["LOCAL_RANK"]), size=size)
    use_cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(world.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    return world


def sum_over_ranks(value: torch.Tensor, world: World) -> torch.Tensor:
    """The sum of a tensor across ranks, in place (gloo has no AVG op: callers divide for a mean)."""
    if world.distributed:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


_cpu_group: list = []  # the gloo group of max_over_ranks where the default group is not on the CPU


def max_over_ranks(value: int, world: World) -> int:
    """The largest of an int's values across ranks, over the CPU (gloo): no wait for a GPU's queue. Every
    rank calls it at the same points; the first call on an nccl job makes a gloo group, collectively."""
    if not world.distributed:
        return value
    if not _cpu_group:
        _cpu_group.append(None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo"))
    box = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(box, op=dist.ReduceOp.MAX, group=_cpu_group[0])
    return int(box.item())


def broadcast_from_main(obj: object, world: World) -> object:
    """Rank 0's value of a picklable object, on every rank."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def close_world(world: World, finished: bool = False) -> None:
    """Leave the process group. ``finished``: this rank ended its run normally, so the others will too;
    they wait for each other first, so that no rank tears down the group while another still uses it
    (a rank that exits mid-teardown can abort: "terminate called without an active exception")."""
    if world.distributed and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()
