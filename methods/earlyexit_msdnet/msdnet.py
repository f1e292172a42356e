"""A multi-scale dense network (MSDNet, Huang et al. ICLR 2018) with early classifiers, applied frame by
frame with an online temporal shift (for the Dynamic Inference early-exit baseline).

The structure follows the authors' PyTorch code (kalviny/MSDNet-PyTorch, `models/msdnet.py`, "max" pruning):
- channels are counted in base units: scale s holds `channels x scale_factor[s]` channels of a base count;
- first layer: scale 0 from the image (a 3x3 conv at 32x32 inputs; at ImageNet sizes a 7x7 stride-2 conv
  with bias + BN + ReLU + max-pool), every coarser scale s from scale s-1 by a 3x3 stride-2 conv;
- dense layer n (1-based, of `base + step x (blocks - 1)` in all): at each active scale s, new features =
  a unit on scale s (+ a stride-2 unit on scale s-1 where that is an input; each then gives half the
  growth) concatenated to the layer's input at scale s; growth `growth x scale_factor[s]`; a unit is a
  1x1 bottleneck (`bottleneck[s]` x its output, at most its input) then a 3x3 conv, each with BN + ReLU.
  The convolutions see their inputs through an online (causal) temporal shift; the concatenated copy
  does not;
- the finest scale is dropped every `ceil(layers / scales)` layers; the layer that drops one is followed
  by a transition: a 1x1 conv + BN + ReLU per remaining scale that compresses the base count by
  `reduction` (floor). The coarsest scale is kept to the end;
- blocks: `base` dense layers in the first, `step` in each later one; a classifier after every block on
  the coarsest scale: two 3x3 stride-2 conv + BN + ReLU of `head_channels` (null: the classifier's
  input channels, as MSDNet's ImageNet classifiers), average pool, dropout, linear.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from vidbench.hooks import TemporalShift

# backbone name of the harness -> MSDNet size (see methods/earlyexit_msdnet/method.yaml)
SIZES = {
    # CPU size (32x32 input -> scales of 16/8/4 px): 3 dense layers, one per block
    "resnet_tiny": dict(scales=3, channels=6, growth=6, scale_factor=[1, 2, 4], bottleneck=[1, 2, 4], blocks=3,
                        base=1, step=1, reduction=0.5, head_channels=16, small_input=True),
    # ImageNet-type sizes (224x224 -> 56/28/14/7 px), 5 classifiers: kalviny's ImageNet settings (base count
    # 32, growth 16, factors 1-2-4-4); resnet18 -> the step-4 model (base 4: 20 layers)
    "resnet18": dict(scales=4, channels=32, growth=16, scale_factor=[1, 2, 4, 4], bottleneck=[1, 2, 4, 4],
                     blocks=5, base=4, step=4, reduction=0.5, head_channels=None, small_input=False),
    # resnet50 -> MSDNet-38 (the step-7 model, base 7: 35 layers; the Dynamic Inference slides' 62.31M params)
    "resnet50": dict(scales=4, channels=32, growth=16, scale_factor=[1, 2, 4, 4], bottleneck=[1, 2, 4, 4],
                     blocks=5, base=7, step=7, reduction=0.5, head_channels=None, small_input=False),
}


def conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1, bias: bool = False) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=bias), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def unit(cin: int, cout: int, stride: int, bottleneck: int) -> nn.Sequential:
    width = min(cin, bottleneck * cout)
    return nn.Sequential(conv_bn_relu(cin, width, 1), conv_bn_relu(width, cout, 3, stride))


class FirstLayer(nn.Module):
    def __init__(self, widths: list[int], small_input: bool):
        super().__init__()
        if small_input:
            first = conv_bn_relu(3, widths[0], 3, 2)          # as resnet_tiny: 32x32 -> 16x16
        else:
            first = nn.Sequential(conv_bn_relu(3, widths[0], 7, 2, bias=True), nn.MaxPool2d(3, 2, 1))
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
    def __init__(self, channels: int, head_channels: int | None, num_classes: int, dropout: float):
        super().__init__()
        width = head_channels or channels
        self.features = nn.Sequential(conv_bn_relu(channels, width, 3, 2), conv_bn_relu(width, width, 3, 2),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


def active_scales(layer: int, layers: int, scales: int) -> tuple[int, int]:
    """(first input scale, first output scale) of dense layer `layer` (1-based) under "max" pruning."""
    interval = math.ceil(layers / scales)
    return max(0, layer - 2) // interval, (layer - 1) // interval


class MSDNet(nn.Module):
    """`forward(frames [N*T, 3, H, W])` -> list of frame logits [N*T, K], one per block's classifier.
    `blocks[e]` (the first also holds the first layer) and `heads[e]` are what checkpoint e adds."""

    def __init__(self, num_classes: int, num_segments: int, scales: int, channels: int, growth: int,
                 scale_factor: list[int], bottleneck: list[int], blocks: int, base: int, step: int,
                 reduction: float, head_channels: int | None, small_input: bool, dropout: float = 0.0,
                 shift_div: int = 8):
        super().__init__()
        if len(scale_factor) != scales or len(bottleneck) != scales:
            raise ValueError("scale_factor and bottleneck need one entry per scale")
        layer_counts = [base] + [step] * (blocks - 1)
        total = sum(layer_counts)

        def widths(count, first=0):
            return [0] * first + [count * f for f in scale_factor[first:]]

        grow = [growth * f for f in scale_factor]
        self.blocks, self.heads = nn.ModuleList(), nn.ModuleList()
        count, layer = channels, 0
        for b, layers in enumerate(layer_counts):
            modules = [FirstLayer(widths(count), small_input)] if b == 0 else []
            for _ in range(layers):
                layer += 1
                first_in, first_out = active_scales(layer, total, scales)
                modules.append(DenseLayer(widths(count, first_in), grow, bottleneck, first_in, first_out,
                                          TemporalShift(num_segments, shift_div, online=True)))
                count += growth
                if first_out > first_in and reduction > 0:
                    reduced = math.floor(reduction * count)
                    modules.append(Transition(widths(count, first_out), widths(reduced, first_out), first_out))
                    count = reduced
            self.heads.append(Classifier(count * scale_factor[-1], head_channels, num_classes, dropout))
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
