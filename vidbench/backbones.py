"""ResNet backbones with torchvision-compatible parameter names and named hooks inside each block.

A residual block computes, for frames stacked as [N*T, C, H, W]:

    branch = shift(x)                          # hook: temporal shift of the branch input (TSM)
    out = relu(bn1(gate(conv1, branch)))       # hook: channel gating of conv1 (CGNet)
    out = policy(out, branch)                  # hook: per-channel keep/reuse/skip (AdaFuse)
    out = conv2(out)
    ... rest of the block, residual add

The policy hook owns the stretch from conv1 to conv2 (`policy.run(block, branch)`, the three middle lines
above), so that a policy may execute it sparsely at inference (computing only the channels its actions
use; see `vidbench.policy`). The hooks default to pass-throughs without parameters, so a torchvision
ImageNet checkpoint loads into every backbone by name. Methods install their own hook modules (see
`vidbench.hooks`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from vidbench.backbone_values import BACKBONES
from vidbench.errors import InputError

_BACKBONES: dict[str, Callable[..., "ResNet"]] = {}


def register_backbone(fn):
    if fn.__name__ not in BACKBONES:
        raise ValueError(f"backbone {fn.__name__!r} is not in vidbench.backbone_values.BACKBONES: add it there")
    _BACKBONES[fn.__name__] = fn
    return fn


def backbone_names() -> list[str]:
    return sorted(_BACKBONES)


def create_backbone(name: str, **kwargs) -> "ResNet":
    if name not in _BACKBONES:
        raise InputError("backbone", f"unknown backbone {name!r}", expected=f"one of {backbone_names()}")
    return _BACKBONES[name](**kwargs)


class Identity(nn.Module):
    """Default shift hook."""

    def forward(self, x):
        return x


class PassPolicy(nn.Module):
    """Default policy hook: every channel kept."""

    def forward(self, out, branch):
        return out

    def run(self, block: "_Block", branch: torch.Tensor) -> torch.Tensor:
        """conv1 (through the gate hook) -> BN -> ReLU -> this policy -> conv2 (before its BN)."""
        out = block.relu(block.bn1(block.gate(block.conv1, branch)))
        return block.conv2(self(out, branch))


class PlainConv(nn.Module):
    """Default gate hook: conv1 computed densely."""

    def forward(self, conv, x):
        return conv(x)


class _Block(nn.Module):
    def _install_hooks(self):
        self.shift, self.gate, self.policy = Identity(), PlainConv(), PassPolicy()
        self.shift_shortcut = False  # AdaFuse^TSM feeds the shifted input to the downsample shortcut

    @property
    def width(self) -> int:
        """Output channels of conv1: the channels a policy decides on."""
        return self.conv1.out_channels

    def _shortcut(self, x, branch):
        if self.downsample is None:
            return x
        return self.downsample(branch if self.shift_shortcut else x)


class BasicBlock(_Block):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self._install_hooks()

    def forward(self, x):
        branch = self.shift(x)
        out = self.bn2(self.policy.run(self, branch))
        return self.relu(out + self._shortcut(x, branch))


class Bottleneck(_Block):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self._install_hooks()

    def forward(self, x):
        branch = self.shift(x)
        out = self.relu(self.bn2(self.policy.run(self, branch)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self._shortcut(x, branch))


class ResNet(nn.Module):
    """ResNet trunk (no fc): `forward` maps frames [N, 3, H, W] to pooled features [N, out_features]."""

    def __init__(self, block, layers, widths=(64, 128, 256, 512), small_input=False):
        super().__init__()
        self.inplanes = widths[0]
        if small_input:  # CPU-sized inputs (32x32): a 3x3 stride-2 stem and no max-pool
            self.conv1 = nn.Conv2d(3, widths[0], 3, 2, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, widths[0], layers[0], 1)
        self.layer2 = self._make_layer(block, widths[1], layers[1], 2)
        self.layer3 = self._make_layer(block, widths[2], layers[2], 2)
        self.layer4 = self._make_layer(block, widths[3], layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_features = widths[3] * block.expansion
        self._init_weights()

    def _make_layer(self, block, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def stages(self) -> list[nn.Sequential]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def blocks(self) -> list[tuple[str, _Block]]:
        """(qualified name, block) for every residual block, in forward order."""
        return [(f"layer{s + 1}.{i}", b) for s, stage in enumerate(self.stages) for i, b in enumerate(stage)]

    def stem(self, x):
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return torch.flatten(self.avgpool(x), 1)


@register_backbone
def resnet18(**kwargs):
    return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


@register_backbone
def resnet50(**kwargs):
    return ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)


@register_backbone
def resnet_tiny(**kwargs):
    """Narrow ResNet with ResNet-18's block structure (one block a stage), for CPU runs at 32x32."""
    return ResNet(BasicBlock, [1, 1, 1, 1], widths=(8, 16, 32, 64), small_input=True, **kwargs)


def read_pretrained(path, mmap: bool = False) -> dict:
    """The backbone entries of a torchvision-format ImageNet state dict in a local file (`fc.*` dropped).

    `mmap` maps the file instead of reading it (for checks that only look at names and shapes).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "pretrained weights file not found", expected="a local torchvision-format .pth file")
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError:
            if not mmap:
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) files cannot map
    except Exception as err:
        raise InputError(path, f"cannot read pretrained weights: {err}", expected="a torch.save'd state dict") from err
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(path, "not a state dict of tensors", expected="a torchvision-format .pth file")
    return {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("fc.")}


def _match_pretrained(own: dict, state: dict, path, name: str = "this backbone") -> None:
    """Stop with the file's name unless `state` has exactly the backbone's parameters and buffers."""
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in own)
    wrong = sorted(k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or wrong:
        detail = "; ".join(f"{label}: {keys[:3]}{'...' if len(keys) > 3 else ''}" for label, keys in
                           (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)) if keys)
        raise InputError(path, f"weights do not match {name} ({detail})",
                         expected="a torchvision checkpoint of the same ResNet depth")


def check_pretrained(name: str, path) -> None:
    """Check, without loading the weights, that `path` holds ImageNet weights for backbone `name`."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        own = create_backbone(name).state_dict()
    _match_pretrained(own, read_pretrained(path, mmap=True), path, name)


def load_pretrained(backbone: ResNet, path) -> None:
    """Load a torchvision-format ImageNet state dict from a local file; its `fc.*` entries are ignored."""
    state = read_pretrained(path)
    _match_pretrained(backbone.state_dict(), state, path)
    backbone.load_state_dict(state, strict=False)
