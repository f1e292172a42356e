"""A compact multi-scale dense network (MSDNet, Huang et al. ICLR 2018) with early classifiers, applied
frame by frame with an online temporal shift (for the Dynamic Inference early-exit baseline).

Structure (our own compact version of the design):
- first layer: scale 0 from the image (a 3x3 conv at 32x32 inputs, or a 7x7 stride-2 conv + max-pool at
  ImageNet sizes), every coarser scale s from scale s-1 by a 3x3 stride-2 conv; `channels` x `scale_factor[s]`
  channels at scale s;
- dense layers: at each active scale s, new features = a unit on scale s (+ a stride-2 unit on scale s-1
  where that is active; each then gives half the growth) concatenated to the layer's input at scale s
  (dense connectivity); growth at scale s = `growth` x `scale_factor[s]`; a unit is an optional 1x1
  bottleneck (`bottleneck[s]` x its output, at most its input) then a 3x3 conv, each with BN + ReLU.
  The convolutions see the inputs through an online (causal) temporal shift; the concatenated copy does not;
- the finest scales are dropped evenly with depth (after `ceil(layers / scales)` layers one scale less),
  as MSDNet's "max" pruning; the coarsest scale is kept to the end;
- blocks: `block_layers` dense layers in the first block, `step` in each later one; every block but the
  last ends with a 1x1 conv per scale that compresses the channels by `reduction`;
- a classifier after every block on the coarsest scale: two 3x3 stride-2 convs (`head_channels`), average
  pool, dropout, linear.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from vidbench.hooks import TemporalShift

# backbone name of the harness -> MSDNet size (see methods/earlyexit_msdnet/method.yaml)
SIZES = {
    # CPU size (32x32 input -> scales of 16/8/4 px): 3 dense layers, one per block, about 0.8x resnet_tiny's MACs
    "resnet_tiny": dict(scales=3, channels=6, growth=6, scale_factor=[1, 2, 4], bottleneck=[1, 2, 4], blocks=3,
                        block_layers=1, step=1, reduction=0.5, head_channels=16, small_input=True),
    # ImageNet-type sizes (224x224 -> 56/28/14/7 px), 5 classifiers; resnet18 -> a lighter one (4 layers a block)
    "resnet18": dict(scales=4, channels=32, growth=16, scale_factor=[1, 2, 4, 4], bottleneck=[1, 2, 4, 4],
                     blocks=5, block_layers=4, step=4, reduction=0.5, head_channels=128, small_input=False),
    # resnet50 -> "MSDNet-38-like": MSDNet's ImageNet hyper-parameters (64 base channels, growth 16, factors
    # 1-2-4-4, first block 4 layers, step 7: 32 dense layers, 5 classifiers)
    "resnet50": dict(scales=4, channels=64, growth=16, scale_factor=[1, 2, 4, 4], bottleneck=[1, 2, 4, 4],
                     blocks=5, block_layers=4, step=7, reduction=0.5, head_channels=128, small_input=False),
}


def conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def unit(cin: int, cout: int, stride: int, bottleneck: int) -> nn.Sequential:
    layers = []
    if bottleneck:
        width = min(cin, bottleneck * cout)
        layers.append(conv_bn_relu(cin, width, 1))
        cin = width
    layers.append(conv_bn_relu(cin, cout, 3, stride))
    return nn.Sequential(*layers)


class FirstLayer(nn.Module):
    def __init__(self, widths: list[int], small_input: bool):
        super().__init__()
        if small_input:
            first = conv_bn_relu(3, widths[0], 3, 2)          # as resnet_tiny: 32x32 -> 16x16
        else:
            first = nn.Sequential(conv_bn_relu(3, widths[0], 7, 2), nn.MaxPool2d(3, 2, 1))
        self.convs = nn.ModuleList([first] + [conv_bn_relu(widths[s - 1], widths[s], 3, 2)
                                              for s in range(1, len(widths))])

    def forward(self, x):
        out = []
        for conv in self.convs:
            x = conv(x)
            out.append(x)
        return out


class DenseLayer(nn.Module):
    """Inputs at scales [first_in, S), outputs at [first_out, S) (first_out is first_in or first_in + 1)."""

    def __init__(self, in_channels: list[int], growth: list[int], bottleneck: list[int], first_in: int,
                 first_out: int, shift: nn.Module):
        super().__init__()
        self.first_in, self.first_out, self.shift = first_in, first_out, shift
        self.same, self.down = nn.ModuleDict(), nn.ModuleDict()
        for s in range(first_out, len(in_channels)):
            has_down = s - 1 >= first_in
            g = growth[s] // 2 if has_down else growth[s]
            self.same[str(s)] = unit(in_channels[s], g, 1, bottleneck[s])
            if has_down:
                self.down[str(s)] = unit(in_channels[s - 1], growth[s] - g, 2, bottleneck[s - 1])

    def forward(self, xs):
        shifted = [None if x is None else self.shift(x) for x in xs]
        out = [None] * len(xs)
        for s in range(self.first_out, len(xs)):
            parts = [xs[s], self.same[str(s)](shifted[s])]
            if str(s) in self.down:
                parts.append(self.down[str(s)](shifted[s - 1]))
            out[s] = torch.cat(parts, 1)
        return out


class Transition(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: list[int], first: int):
        super().__init__()
        self.first = first
        self.convs = nn.ModuleDict({str(s): conv_bn_relu(in_channels[s], out_channels[s], 1)
                                    for s in range(first, len(in_channels))})

    def forward(self, xs):
        return [None if s < self.first else self.convs[str(s)](x) for s, x in enumerate(xs)]


class Classifier(nn.Module):
    def __init__(self, channels: int, head_channels: int, num_classes: int, dropout: float):
        super().__init__()
        self.features = nn.Sequential(conv_bn_relu(channels, head_channels, 3, 2),
                                      conv_bn_relu(head_channels, head_channels, 3, 2),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.fc = nn.Linear(head_channels, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


class MSDNet(nn.Module):
    """`forward(frames [N*T, 3, H, W])` -> list of frame logits [N*T, K], one per block's classifier.
    `blocks[e]` (the first also holds the first layer) and `heads[e]` are what checkpoint e adds."""

    def __init__(self, num_classes: int, num_segments: int, scales: int, channels: int, growth: int,
                 scale_factor: list[int], bottleneck: list[int], blocks: int, block_layers: int, step: int,
                 reduction: float, head_channels: int, small_input: bool, dropout: float = 0.0,
                 shift_div: int = 8):
        super().__init__()
        if len(scale_factor) != scales or len(bottleneck) != scales:
            raise ValueError("scale_factor and bottleneck need one entry per scale")
        widths = [channels * f for f in scale_factor]
        grow = [growth * f for f in scale_factor]
        layer_counts = [block_layers] + [step] * (blocks - 1)
        total = sum(layer_counts)
        interval = math.ceil(total / scales)
        self.blocks, self.heads = nn.ModuleList(), nn.ModuleList()
        first, index = 0, 0
        for b, count in enumerate(layer_counts):
            modules = [FirstLayer(widths, small_input)] if b == 0 else []
            for _ in range(count):
                first_out = min(index // interval, scales - 1)
                layer = DenseLayer(widths, grow, bottleneck, first, first_out,
                                   TemporalShift(num_segments, shift_div, online=True))
                widths = [0] * first_out + [widths[s] + grow[s] for s in range(first_out, scales)]
                modules.append(layer)
                first, index = first_out, index + 1
            if b < blocks - 1:
                reduced = [0] * first + [int(math.floor(reduction * w)) for w in widths[first:]]
                modules.append(Transition(widths, reduced, first))
                widths = reduced
            self.heads.append(Classifier(widths[-1], head_channels, num_classes, dropout))
            self.blocks.append(nn.Sequential(*modules))

    def forward(self, frames):
        xs, logits = frames, []
        for block, head in zip(self.blocks, self.heads):
            xs = block(xs)
            logits.append(head(xs[-1]))
        return logits


def msdnet_size(backbone: str, overrides: dict | None = None) -> dict:
    """The MSDNet size standing in for a harness backbone name, with optional overrides."""
    if backbone not in SIZES:
        raise KeyError(f"no MSDNet size for backbone {backbone!r}; known: {sorted(SIZES)}")
    return {**SIZES[backbone], **(overrides or {})}
