"""`vidbench pretrain`: the synthetic suite's stand-in for ImageNet pretraining.

The paper's models start from ImageNet weights; the synthetic suite has no ImageNet, and a tiny backbone
trained from scratch spends most of its epochs learning to see the objects at all. This command renders
single frames with the synthetic generators' primitives (a fresh random stream, none of the datasets'
videos) and trains the backbone to classify each frame's dynamics family and how far along it the frame
is (`BINS` bins of progress). One frame carries no order, so the features know where an object is, how
big, turned or bright, but not where it is going: an order-blind model (TSN) stays order-blind. The
Kinetics analogue's appearance classes are not among the labels.

Writes a torchvision-format state dict of the backbone (no classifier), what `model.pretrained` loads.
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidbench import io as vio
from vidbench.backbones import backbone_names, create_backbone
from vidbench.data import synth
from vidbench.data.transforms import ClipTransform
from vidbench.engine import keep_freed_memory

BINS = 4  # progress bins per dynamics family
FRAMES_PER_CLIP = 4


def families() -> list[tuple[object, dict]]:
    """Every distinct (generator, arguments) of the temporal synthetic datasets, in a fixed order."""
    found = []
    for pairs in (synth.STHV1_PAIRS, synth.STHV2_PAIRS, synth.JESTER_PAIRS):
        for _, _, generator, kwargs in pairs:
            if (generator, kwargs) not in found:
                found.append((generator, kwargs))
    return found


def render_frames(count: int, seed: int) -> tuple[list[np.ndarray], torch.Tensor]:
    """`count` uint8 [H, W, 3] frames and their labels (family * BINS + progress bin)."""
    rng = np.random.default_rng(seed)
    renderer, kinds = synth.Renderer(rng), families()
    frames, labels = [], []
    while len(frames) < count:
        family = int(rng.integers(len(kinds)))
        generator, kwargs = kinds[family]
        length, height, width = synth.clip_size(rng)
        clip = renderer.finish(generator(rng, synth.Canvas.make(height, width), length, **kwargs))
        for index in rng.choice(length, FRAMES_PER_CLIP, replace=False):
            frames.append(clip[index])
            labels.append(family * BINS + min(int(index * BINS / length), BINS - 1))
    return frames[:count], torch.tensor(labels[:count])


def pretrain(backbone_name: str, *, images: int, steps: int, batch_size: int, lr: float, input_size: int,
             seed: int, log=sys.stderr) -> dict:
    """The trained backbone's state dict (contiguous tensors, torchvision names)."""
    torch.manual_seed(seed)
    frames, labels = render_frames(images, seed)
    backbone = create_backbone(backbone_name)
    model = nn.Sequential(backbone, nn.Linear(backbone.out_features, len(families()) * BINS))
    model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    crop = ClipTransform(train=True, input_size=input_size, scale_size=input_size)
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for step in range(steps):
        batch = torch.randint(len(frames), (batch_size,), generator=generator)
        x = torch.stack([crop([frames[i]], generator)[0] for i in batch.tolist()])
        loss = F.cross_entropy(model(x), labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step + 1 == steps:
            print(f"step {step + 1}/{steps}: loss {loss.item():.3f} ({time.perf_counter() - started:.1f} s)", file=log)
    return {name: value.contiguous() for name, value in backbone.state_dict().items()}


def add_arguments(parser):
    parser.add_argument("--backbone", default="resnet_tiny", choices=backbone_names(), help="backbone to pretrain")
    parser.add_argument("--out", required=True, help="the .pth file to write (what model.pretrained names)")
    parser.add_argument("--images", type=int, default=6000, help="frames rendered")
    parser.add_argument("--steps", type=int, default=300, help="optimisation steps")
    parser.add_argument("--batch-size", type=int, default=256, help="frames a step")
    parser.add_argument("--lr", type=float, default=0.01, help="peak learning rate of the one-cycle schedule")
    parser.add_argument("--input-size", type=int, default=32, help="crop side (the runs' data.input_size)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the frames, the order and the weights")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")


def run(args):
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    state = pretrain(args.backbone, images=args.images, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                     input_size=args.input_size, seed=args.seed)
    vio.save_torch(state, args.out)
    print(f"{args.backbone} pretrained on {args.images} synthetic frames -> {args.out}")
