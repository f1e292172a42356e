"""Channel gating (CGNet, Hua et al. NeurIPS 2019) of conv1 in residual blocks, and its per-video cost.

A `ChannelGate` sits in a block's `gate` slot (see `vidbench.backbones`) and computes conv1 in two parts:

    partial = conv1 restricted to the first 1/p of the input channels       (always computed)
    gate    = sigmoid(alpha * (BN(partial) - theta)) > 0.5                    (per output position c, h, w)
    output  = partial + gate * rest                                           (rest: the other input channels)

The hard gate is used in the forward pass; in training its gradient is the sigmoid's (straight-through).
`theta` is learnable per output channel of conv1 (initialised at 0, so about half the positions open at
the start) and pulled towards 1 by the loss weight * sum((theta - 1)^2): a larger threshold closes more
positions. The BN of the gate has no affine parameters (it only standardises the partial sum).

Cost: fvcore counts the two partial convolutions under `<block>.gate.partial` and `<block>.gate.rest`
(together the dense conv1) and the gate's BN under `<block>.gate.norm`. Per video, the "rest" part costs
its dense MACs times the share of open gate positions, averaged over the video's frames:

    conv1 MACs of a video = partial + rest * open_fraction    (= (1/p + (1 - 1/p) * open) x dense conv1)

Sparse execution (`vidbench.sparse.set_sparse`, inference): the gate opens single output positions,
which no dense kernel can skip, so the rest is computed for every output channel with at least one open
position in a frame (one call over the frames, `vidbench.sparse.conv_outputs`) and skipped only for
channels closed over the whole frame. The FLOPs count every closed position as saved; what the sparse
path saves is the share of whole closed channels, usually far less.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from vidbench.backbones import ResNet
from vidbench.sparse import Realizable, conv_outputs


class _SliceConv(nn.Module):
    """conv's weights restricted to input channels [lo, hi): a module of its own so fvcore names its cost."""

    def __init__(self, lo: int, hi: int):
        super().__init__()
        self.lo, self.hi = lo, hi

    def forward(self, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x[:, self.lo:self.hi], conv.weight[:, self.lo:self.hi], None, conv.stride, conv.padding,
                        conv.dilation)


class ChannelGate(nn.Module, Realizable):
    """The gate hook of one block. `force`: None (learned gate), "open" (dense conv1) or "closed"
    (partial sum only); `self.open` keeps the share of open positions per frame [N*T] of the last call."""

    def __init__(self, in_channels: int, out_channels: int, groups: int = 4, alpha: float = 2.0,
                 force: str | None = None):
        super().__init__()
        if force not in (None, "open", "closed"):
            raise ValueError(f"force must be None, 'open' or 'closed', not {force!r}")
        split = max(1, in_channels // groups)
        self.partial, self.rest = _SliceConv(0, split), _SliceConv(split, in_channels)
        self.norm = nn.BatchNorm2d(out_channels, affine=False)
        self.theta = nn.Parameter(torch.zeros(out_channels))
        self.theta.optimizer_group = "weights"   # as released: lr x1 and weight decay, not the biases' group
        self.alpha, self.force = alpha, force
        self.open: torch.Tensor | None = None

    def forward(self, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        if conv.groups != 1 or conv.bias is not None:
            raise ValueError("channel gating needs a plain conv1 (no groups, no bias)")
        partial = self.partial(conv, x)
        score = self.norm(partial)
        if self.force is None:
            soft = torch.sigmoid(self.alpha * (score - self.theta[None, :, None, None]))
            hard = (soft > 0.5).to(soft.dtype)
            gate = hard + soft - soft.detach() if self.training else hard
        else:
            gate = torch.full_like(score, 1.0 if self.force == "open" else 0.0)
        self.open = gate.detach().mean((1, 2, 3))
        sparse = self.sparse and not self.training
        rest = self.rest_where_open(conv, x, gate) if sparse else self.rest(conv, x)
        return partial + gate * rest

    def rest_where_open(self, conv: nn.Conv2d, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """The rest of conv1 for the channels with an open position in each frame, zero elsewhere."""
        inputs = x[:, self.rest.lo:self.rest.hi]
        needed = gate.amax((2, 3)) > 0                                 # [frames, channels]
        return conv_outputs(inputs, conv.weight[:, self.rest.lo:self.rest.hi], conv, needed, torch.zeros_like(gate))


def install_gates(backbone: ResNet, groups: int = 4, alpha: float = 2.0, force: str | None = None,
                  prefix: str = "backbone.") -> list[tuple[str, ChannelGate]]:
    """A ChannelGate on conv1 of every block; returns [(cost-table name of the gate, gate)]."""
    installed = []
    for name, block in backbone.blocks():
        block.gate = ChannelGate(block.conv1.in_channels, block.conv1.out_channels, groups, alpha, force)
        installed.append((f"{prefix}{name}.gate", block.gate))
    return installed


def gated_savings(gates: list[tuple[str, ChannelGate]], costs: dict[str, float], num_segments: int) -> torch.Tensor:
    """[B] MACs that closed gate positions saved on each video: rest MACs x (1 - open share over frames)."""
    saved = 0.0
    for name, gate in gates:
        open_share = gate.open.view(-1, num_segments).mean(1)
        saved = saved + costs.get(f"{name}.rest", 0.0) * (1 - open_share)
    return saved


def theta_loss(gates: list[tuple[str, ChannelGate]], weight: float, target: float = 1.0) -> torch.Tensor:
    """weight * sum over gates and channels of (theta - target)^2."""
    return weight * sum(((gate.theta - target) ** 2).sum() for _, gate in gates)
