"""Training speed: videos/s of the training step (forward, losses, backward, optimizer step) for TSN and
AdaFuse, in float32 against mixed precision (train.amp), in one process against N (train.gpus), and
fed by the clip loader against batches already in memory.

Each case trains --steps timed steps (after --warmup untimed ones) on a global batch of --batch clips of
--frames x --size x --size, with the trainer's own `train_step`, `Precision` and optimizer groups; N
processes are the ranks of `vidbench.distributed` (gloo on the CPU, NCCL on CUDA with one GPU each),
each on its share of the global batch, with BatchNorm over the global batch. The loader case builds a
Something-V1 layout of JPEG frame folders (--videos clips of 320x240) and trains on the loader's batches
(--workers processes): fed/in-memory near 1 means the loader keeps the model busy.
Never part of the tests.

    python benchmarks/train_speed.py                                   # CPU: ResNet-50, batch 2
    python benchmarks/train_speed.py --device cuda --batch 32 --processes 1 4 --amp off bf16 fp16 --workers 8
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vidbench import distributed  # noqa: E402
from vidbench.flops import attach  # noqa: E402
from vidbench.plugins import get_method  # noqa: E402
from vidbench.train import Precision, make_optimizer, train_step  # noqa: E402

CLASSES = 174  # Something-Something V1
RECIPE = {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "bias_lr_mult": 2.0, "optimizer": "sgd", "clip_grad": 20}


def build(method: str, backbone: str, frames: int, size: int, device):
    plugin = get_method(method)
    model = plugin.build(dict(plugin.defaults), backbone=backbone, num_classes=CLASSES, num_segments=frames)
    return attach(model, (frames, 3, size, size)).to(device).train()


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(model, batches, device, amp: str, warmup: int, ranks=distributed.Ranks()) -> float:
    """Seconds of the timed steps (`batches` yields (clips, labels): warm-up ones first)."""
    step_model = distributed.wrap(model, ranks, device, sync_bn=True)
    optimizer, precision = make_optimizer(model, RECIPE), Precision(amp, device)
    start = None
    for i, (clips, labels) in enumerate(batches):
        if i == warmup:
            sync(device)
            distributed.barrier(ranks)
            start = time.perf_counter()
        train_step(step_model, clips.to(device, non_blocking=True), labels.to(device), optimizer, RECIPE, 0, i,
                   precision)
    sync(device)
    distributed.barrier(ranks)
    return time.perf_counter() - start


def in_memory(batch: int, frames: int, size: int, count: int):
    clips = torch.randn(batch, frames, 3, size, size)
    labels = torch.randint(CLASSES, (batch,), generator=torch.Generator().manual_seed(0))
    return [(clips, labels)] * count


def rank_main(rank: int, args, method: str, amp: str, world: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    ranks = distributed.Ranks(rank, world, rank)
    device = distributed.rank_device(torch.device(args.device), ranks)
    torch.set_num_threads(max(1, args.threads // world))
    with distributed.process_group(ranks, device):
        torch.manual_seed(0)
        model = build(method, args.backbone, args.frames, args.size, device)
        seconds = timed_steps(model, in_memory(args.batch // world, args.frames, args.size, args.warmup + args.steps),
                              device, amp, args.warmup, ranks)
    if rank == 0:
        results.put(seconds)


def many_processes(args, method: str, amp: str, world: int) -> float:
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    mp.start_processes(rank_main, (args, method, amp, world, 29500 + os.getpid() % 1000, results), nprocs=world,
                       start_method="spawn")
    return results.get()


def loader_fed(args, method: str, amp: str) -> float:
    """Seconds of the timed steps on the clip loader's batches (JPEG frame folders of 320x240)."""
    from benchmarks.loader_speed import build_datasets
    from vidbench.data.dataset import build_loader

    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = build_datasets(Path(tmp), ["frames"], args.videos, (320, 240), 2.0, 12)["frames"]
        loader = build_loader(prepared, "train", train=True, num_segments=args.frames, input_size=args.size,
                              scale_size=args.size * 8 // 7, flip=False, batch_size=args.batch, workers=args.workers,
                              seed=0, device=device)
        wanted = args.warmup + args.steps

        def batches():
            served = 0
            while served < wanted:
                for clips, labels, _ in loader:
                    yield clips, labels
                    served += 1
                    if served == wanted:
                        return

        torch.manual_seed(0)
        model = build(method, args.backbone, args.frames, args.size, device)
        return timed_steps(model, batches(), device, amp, args.warmup)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--methods", nargs="+", default=["tsn", "adafuse"])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=2, help="global batch (clips per step, over every process)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--amp", nargs="+", default=None, help="default: off bf16 (CPU), off bf16 fp16 (CUDA)")
    parser.add_argument("--processes", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads over all processes")
    parser.add_argument("--workers", type=int, default=2, help="loader processes of the loader-fed case (0: skip it)")
    parser.add_argument("--videos", type=int, default=16, help="clips of the loader-fed case's dataset")
    args = parser.parse_args()
    device = torch.device(args.device)
    amps = args.amp or (["off", "bf16", "fp16"] if device.type == "cuda" else ["off", "bf16"])
    torch.set_num_threads(args.threads)
    print(f"# train_speed: {args.backbone}, {args.frames} x {args.size}^2, global batch {args.batch}, {args.steps} "
          f"steps after {args.warmup}; {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or platform.machine()}), "
          f"{args.threads} threads, torch {torch.__version__}")
    print(f"{'method':10s} {'amp':5s} {'processes':>9s} {'videos/s':>9s} {'vs fp32, 1 process':>20s}")
    for method in args.methods:
        speeds = {}
        for amp in amps:
            for world in args.processes:
                seconds = one_process(args, method, amp) if world == 1 else many_processes(args, method, amp, world)
                speeds[amp, world] = speed = args.batch * args.steps / seconds
                print(f"{method:10s} {amp:5s} {world:9d} {speed:9.2f} {speed / next(iter(speeds.values())):19.2f}x",
                      flush=True)
        if args.workers:
            amp = amps[-1]
            alone = speeds.get((amp, 1)) or args.batch * args.steps / one_process(args, method, amp)
            fed = args.batch * args.steps / loader_fed(args, method, amp)
            print(f"{method:10s} {amp:5s} {1:9d} {fed:9.2f}   fed by the loader ({args.workers} workers): "
                  f"{fed / alone:.2f} of in-memory", flush=True)
    return 0


def one_process(args, method: str, amp: str) -> float:
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build(method, args.backbone, args.frames, args.size, device)
    steps = in_memory(args.batch, args.frames, args.size, args.warmup + args.steps)
    return timed_steps(model, steps, device, amp, args.warmup)


if __name__ == "__main__":
    sys.exit(main())
