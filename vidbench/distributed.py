"""Multi-process training: one process per GPU (`train.gpus`), started by torchrun.

`vidbench train` on a spec with `train.gpus: N > 1` runs `torchrun --standalone --nproc-per-node N`
over itself (`launch`); each process (rank) then trains on its share of every batch:
- The global batch is `train.batch_size`, as in a one-process run: every rank draws the same epoch
  order and per-sample seeds (`SeededSampler`), and rank r takes the r-th of N near-equal parts of each
  global batch. Each rank's loss is weighted by its share, so the averaged gradient is the global
  batch's mean, and with `train.sync_bn` the BatchNorm statistics are the global batch's too: the run
  then follows the one-process run up to float rounding (tests/test_distributed.py).
- Dropout and sampled policies draw from per-rank random streams, so with them the run is its own.
- Rank 0 alone writes the run directory (checkpoints, logs, weights) and validates; evaluation and
  latency stay single-process.
- All ranks agree before each step whether to stop (a signal reached any of them) and whether a rank's
  batch is empty (every video unreadable): then every rank skips it, since a collective must be joined
  by all.
On the CPU the processes talk over gloo (the tests); on CUDA over NCCL, one GPU each.
"""
from __future__ import annotations

import os
import signal
import sys
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce
from torch.nn.parallel import DistributedDataParallel

# the autograd-aware all-reduce; its suggested successor (_functional_collectives) is private API
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_reduce is deprecated")


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local: int = 0

    @classmethod
    def from_env(cls) -> "Ranks":
        """This process's place among torchrun's (RANK, WORLD_SIZE, LOCAL_RANK); one process outside it."""
        env = os.environ
        if "WORLD_SIZE" not in env:
            return cls()
        return cls(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))

    @property
    def many(self) -> bool:
        return self.world > 1

    @property
    def writes(self) -> bool:
        """Whether this process writes the run directory (rank 0)."""
        return self.rank == 0


def launch(spec_json: str, out: str, processes: int, progress: bool) -> str | None:
    """Run `vidbench train` in `processes` ranks, as `torchrun --standalone` does (its elastic agent, here
    in this process); the signal that stopped them, or None when they finished. SIGTERM and SIGUSR1
    (Slurm's `--signal`) reach the ranks as SIGTERM; the agent waits for their checkpoint. A failed
    rank raises the agent's ChildFailedError."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    def usr1_as_sigterm(signum, frame):
        raise SignalException("SIGUSR1: stop with a checkpoint", sigval=signal.SIGTERM)

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=processes, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.5)
    command = ["-m", "vidbench", "train", "--spec", spec_json, "--out", out] + ([] if progress else ["--no-progress"])
    previous = signal.signal(signal.SIGUSR1, usr1_as_sigterm)
    try:
        elastic_launch(config, sys.executable)(*command)
        return None
    except SignalException as stop:
        return signal.Signals(stop.sigval).name
    finally:
        signal.signal(signal.SIGUSR1, previous)


@contextmanager
def process_group(ranks: Ranks, device: torch.device):
    """The process group of a multi-process run (NCCL on CUDA, gloo on the CPU); nothing for one process."""
    if not ranks.many:
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # rank 0 validates alone while the others wait in the next collective: allow a long validation
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=ranks.rank, world_size=ranks.world,
                            timeout=timedelta(hours=6))
    try:
        yield
    finally:
        dist.destroy_process_group()


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """A rank's own GPU (its local rank) where the run trains on CUDA."""
    if ranks.many and device.type == "cuda" and device.index is None:
        return torch.device("cuda", ranks.local)
    return device


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch: the ranks sum their counts,
    sums and sums of squares (one all-reduce that gradients flow back through), taken about the running
    mean, which every rank holds alike, so that the variance loses no precision to cancellation. torch's
    SyncBatchNorm does the same on GPUs only; this one runs over gloo too, so the CPU tests exercise it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        channels, dims, shape = x.shape[1], (0, 2, 3), (1, x.shape[1], 1, 1)
        shift = self.running_mean.detach().view(shape) if self.track_running_stats else 0.0
        xs = x.float() - shift
        total = all_reduce(torch.cat([xs.sum(dims), (xs * xs).sum(dims), xs.new_tensor([x.numel() / channels])]))
        count = total[-1]
        offset = total[:channels] / count                          # the batch mean minus the shift
        var = (total[channels:2 * channels] / count - offset * offset).clamp(min=0)
        centred = xs - offset.view(shape)
        self._update_running((offset + shift.flatten() if self.track_running_stats else offset).detach(),
                             var.detach() * count / (count - 1).clamp(min=1))
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        if not self.track_running_stats:
            return
        self.num_batches_tracked += 1
        momentum = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.item()
        self.running_mean.lerp_(mean, momentum)
        self.running_var.lerp_(unbiased_var, momentum)


def sync_batchnorm(model: nn.Module) -> nn.Module:
    """Make every BatchNorm2d of `model` a `GlobalBatchNorm2d` in place. The class is swapped rather than
    the module replaced, since method hooks hold references to their blocks' normalisation layers."""
    for module in model.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = GlobalBatchNorm2d
    return model


def wrap(model: nn.Module, ranks: Ranks, device: torch.device, sync_bn: bool) -> nn.Module:
    """The module a rank's training step calls: DistributedDataParallel (gradients averaged over ranks)."""
    if not ranks.many:
        return model
    if sync_bn:
        sync_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


@dataclass
class StepAgreement:
    weight: float      # this rank's loss weight: its share of the global batch times the number of ranks
    skip: bool         # a rank has no readable video in this batch: every rank skips the step
    stop: bool         # a rank was asked to stop: every rank stops before this step


def agree(ranks: Ranks, videos: int, stop: bool, device: torch.device) -> StepAgreement:
    """What every rank does with the current batch (one small all-reduce per step)."""
    if not ranks.many:
        return StepAgreement(1.0, videos == 0, stop)
    flags = torch.tensor([videos, videos == 0, stop], dtype=torch.float64, device=device)
    dist.all_reduce(flags)
    total, empty, stopping = flags.tolist()
    return StepAgreement(videos * ranks.world / max(total, 1), empty > 0, stopping > 0)


def gather(ranks: Ranks, value) -> list:
    """`value` of every rank, in rank order (a list of one in a one-process run)."""
    if not ranks.many:
        return [value]
    values = [None] * ranks.world
    dist.all_gather_object(values, value)
    return values


def barrier(ranks: Ranks) -> None:
    if ranks.many:
        dist.barrier()
