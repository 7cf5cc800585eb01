"""Process-group setup for ``torchrun``: NCCL on GPUs, gloo on CPU. Without torchrun: one process.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; each process trains on its shard of the quadruplets
(``draw_quadruplets(rank=, world_size=)``) and DDP averages the gradients. Only rank 0 writes.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
import yaml

from .rundir import Run


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def init_world(device_type: str) -> World:
    """Join torchrun's process group if there is one (once per process) and return this process's place."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    world = World(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), size)
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return world


def broadcast_flag(flag: bool, world: World, device: torch.device) -> bool:
    """Rank 0's value of ``flag`` on every rank (so that all ranks stop together)."""
    if not world.distributed:
        return flag
    t = torch.tensor([int(flag)], device=device if device.type == "cuda" else "cpu")
    dist.broadcast(t, 0)
    return bool(t.item())


def launch_torchrun(config, processes: int, resume: str | None = None):
    """Train ``config`` on ``processes`` GPUs (or CPU processes) with torchrun in a subprocess → the Run.

    For notebooks: the kernel itself never initialises CUDA or a process group. The config is written
    as a profile next to its run directory, and ``python -m torch.distributed.run --standalone`` (its rendezvous on
    a free loopback port, so two launches never collide) runs ``qcslib train``."""
    config.run_dir.parent.mkdir(parents=True, exist_ok=True)
    profile = config.run_dir.parent / f"{config.name}.yaml"
    profile.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
           "-m", "qcslib", "train", "--profile", str(profile), "--overwrite"]
    cmd += ["--resume", str(resume)] if resume else []
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"torchrun exited with {result.returncode}: {result.stderr.strip().splitlines()[-1:]}")
    return Run.load(config.run_dir)
