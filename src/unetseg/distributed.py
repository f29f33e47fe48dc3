"""PyTorch's own DistributedDataParallel, as launched by torchrun: gloo on CPU, nccl on CUDA.

A process started by torchrun finds RANK, WORLD_SIZE and LOCAL_RANK in its environment; `from_env`
joins the group. Everything else in unetseg asks `World.main` before writing or printing, so rank 0 alone
logs, checkpoints and evaluates, and the run folder looks the same as a single process's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def sum(self, *values: float) -> list[float]:
        """Sums of the values over all processes (float64, one all-reduce)."""
        t = torch.tensor(values, dtype=torch.float64)
        if self.distributed:
            t = t.to(_device()) if dist.get_backend() == "nccl" else t
            dist.all_reduce(t)
        return t.cpu().tolist()

    def broadcast(self, *values: float) -> list[float]:
        """Rank 0's values, everywhere."""
        t = torch.tensor(values, dtype=torch.float64)
        if self.distributed:
            t = t.to(_device()) if dist.get_backend() == "nccl" else t
            dist.broadcast(t, src=0)
        return t.cpu().tolist()


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device())


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def from_env(device: torch.device) -> World:
    """Join the process group torchrun set up (a no-op World for a plain process)."""
    if not launched_by_torchrun():
        return World()
    rank, size, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    # share the cores: torchrun leaves every process with all of them
    if device.type == "cpu":
        local_size = int(os.environ.get("LOCAL_WORLD_SIZE", size))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_size))
    return World(rank, size, local)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def launch_local(nproc: int, args: list[str]) -> int:
    """`torchrun --standalone --nproc-per-node N python ARGS` through torchrun's own launcher, in this process:
    the exit status of the processes (0, or the first failure's), without torchrun's failure report (the
    processes have printed their own one-line errors)."""
    import logging
    import sys
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0)
    try:
        elastic_launch(config, sys.executable)(*args)
    except ChildFailedError as e:
        code = e.get_first_failure()[1].exitcode
        return code if code > 0 else 1
    return 0
