"""Per-channel temporal fusion (keep / reuse / skip) after conv1 of residual blocks, and its cost.

Shared by AdaFuse (a learned policy) and the policy baselines (random, threshold pruning). A policy
hook sits at the block's `policy` slot (see `vidbench.backbones`): it receives conv1 -> BN -> ReLU's
output `out` [N*T, C, H, W] and the (possibly shifted) block input `branch`, decides one action per
channel and frame, and returns the fused map

    out_t * keep_t + out_{t-1} * reuse_t        (out_{-1} = 0; skipped channels are zero).

Actions are one-hot vectors on the last dim in the order [skip, reuse, keep]; straight-through
estimates (one-hot forward, soft gradient) pass through `fuse` and `eq5_flops` unchanged, so an
efficiency loss built on the per-video FLOPs trains the policy.

Cost (Eq. 5 of AdaFuse): conv1's output channel c at frame t is computed iff it is kept at t or
reused at t+1 (at the last frame: iff kept); conv2's cost at frame t scales with the share of its
input channels not skipped. Everything else in the network (policy nets included) costs what fvcore
counted densely.

Two ways to execute a hook's block (`PolicyHook.run`): masked (conv1 dense, `fuse`, conv2 dense: the
training path) and, at inference with `vidbench.sparse.set_sparse`, sparse: per video, conv1 (BN folded
in, ReLU) and conv2 over only the channels that some frame reads, fused as Eq. 3 fuses. A channel held
skipped over the video costs nothing, one held kept costs what Eq. 5 counts (held reused: one frame
more), and one whose action changes from frame to frame is computed at every frame: dense kernels run a
call over the same channels for all frames at full speed, and per-frame channel sets at 0.07-0.65 of it
(see `vidbench.sparse`). A policy that decides from conv1's output (`needs_output`, threshold pruning) has
conv1 computed densely and saves only in conv2.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from vidbench.backbones import PassPolicy, PlainConv, ResNet
from vidbench.model import FrameClassifier, VideoOutput
from vidbench.sparse import Realizable, SparseWeights, aligned, conv

SKIP, REUSE, KEEP = 0, 1, 2
ACTIONS = ("skip", "reuse", "keep")


def previous_frame(x: torch.Tensor, num_segments: int) -> torch.Tensor:
    """x [N*T, ...] -> the same tensor of frame t-1 for each frame t, zeros at t = 0."""
    video = x.view(-1, num_segments, *x.shape[1:])
    shifted = torch.cat([torch.zeros_like(video[:, :1]), video[:, :-1]], 1)
    return shifted.reshape(x.shape)


def fuse(out: torch.Tensor, actions: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Eq. 3: out [N*T, C, H, W], actions [N*T, C, 3] -> out*keep + out(t-1)*reuse (skip -> 0).

    out(t-1) is `out` rolled by one frame, with each video's first reuse zeroed (it would read the
    previous video's last frame): unlike `previous_frame`, rolling keeps a channels-last `out` channels-last
    in the forward and the backward pass, which made an AdaFuse training step on resnet_tiny 1.1x faster."""
    keep = actions[..., KEEP][..., None, None]
    first = torch.arange(len(out), device=out.device) % num_segments == 0
    reuse = actions[..., REUSE].masked_fill(first[:, None], 0)[..., None, None]
    return out * keep + out.roll(1, 0) * reuse


def eq5_flops(actions: torch.Tensor, conv1_macs: float, conv2_macs: float) -> torch.Tensor:
    """Eq. 5: MACs of a block's conv1 and conv2 over each video under `actions`.

    actions [B, T, C, 3] (one-hot or straight-through); conv1_macs / conv2_macs: dense MACs of ONE frame.
    Returns [B], differentiable w.r.t. actions.
    """
    keep, reuse, skip = actions[..., KEEP], actions[..., REUSE], actions[..., SKIP]
    # reused at t+1 (nothing after the last frame)
    reuse_next = torch.cat([reuse[:, 1:], torch.zeros_like(reuse[:, :1])], 1)
    computed = keep + reuse_next - keep * reuse_next          # logical or of one-hot entries
    conv1 = computed.mean(2).sum(1) * conv1_macs
    conv2 = (1 - skip.mean(2)).sum(1) * conv2_macs
    return conv1 + conv2


def one_hot(index: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """Action indices [...] -> one-hot [..., 3]."""
    return nn.functional.one_hot(index.long(), 3).to(dtype)


def conv_size(conv: nn.Conv2d, size: tuple[int, int]) -> tuple[int, int]:
    """Spatial size of conv's output for an input of `size`."""
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                 for n, k, s, p, d in zip(size, conv.kernel_size, conv.stride, conv.padding, conv.dilation))


def channels_read(index: torch.Tensor) -> torch.Tensor:
    """Action indices [T, C] of one video -> the channels conv2 reads at some frame (kept, or reused at
    t > 0: a reuse at the first frame reads zeros). conv1 computes the same channels: a channel computed
    at t is kept at t or reused at t + 1."""
    read = index == KEEP
    read[1:] |= index[1:] == REUSE
    return read.any(0).nonzero()[:, 0]


class PolicyHook(PassPolicy, Realizable):
    """Base policy hook of one residual block. Subclasses implement `decide(out, branch)` returning
    actions [N*T, C, 3]; `forward` fuses and keeps `self.actions` [N, T, C, 3] of the last call.
    A policy that decides from the block input alone is called with out=None on the sparse path; one
    that needs conv1's output sets `needs_output`.

    `conv1_name` / `conv2_name` are the block's conv module names in the model's cost table
    (set by `install_policies`); `block_name` is the block's name in the backbone ("layer1.0")."""

    needs_output = False

    def __init__(self, num_segments: int):
        super().__init__()
        self.num_segments = num_segments
        self.block_name = ""
        self.conv1_name = ""
        self.conv2_name = ""
        self.channels = 0                      # conv1 output channels of the block
        self.actions: torch.Tensor | None = None
        self.weights = SparseWeights()         # what the sparse path reads of conv1, bn1 and conv2

    def decide(self, out: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, out, branch):
        actions = self.decide(out, branch)
        self.actions = actions.view(-1, self.num_segments, *actions.shape[1:])
        return fuse(out, actions, self.num_segments)

    def run(self, block, branch):
        if self.training or not self.sparse:
            return super().run(block, branch)
        dense_conv1 = self.needs_output or not isinstance(block.gate, PlainConv)
        out = block.relu(block.bn1(block.gate(block.conv1, branch))) if dense_conv1 else None
        actions = self.decide(out, branch)
        self.actions = actions.view(-1, self.num_segments, *actions.shape[1:])
        weights = self.weights.current(block.conv1, block.bn1, block.conv2)
        frames = self.num_segments
        videos = [self.run_video(block, branch[first:first + frames], weights, actions[first:first + frames],
                                 None if out is None else out[first:first + frames])
                  for first in range(0, len(branch), frames)]
        return videos[0] if len(videos) == 1 else torch.cat(videos)

    def run_video(self, block, branch, weights, actions, out=None):
        """The sparse path of one video (its T frames): conv1 for the channels read at some frame, fused
        as Eq. 3 fuses, conv2 over those channels; their count rounded up to a multiple of ALIGN with
        channels no frame reads (zeros to conv2), so that calls repeat shapes the kernels have seen."""
        read = channels_read(actions.argmax(-1))
        if len(read) == 0:                     # every channel skipped: conv2 reads zeros only
            size = conv_size(block.conv2, conv_size(block.conv1, branch.shape[2:]))
            return branch.new_zeros(len(branch), block.conv2.out_channels, *size)
        used = aligned(read, self.channels)
        if out is None:
            out = F.relu_(conv(branch, *weights.conv1_rows(used), block.conv1))
        else:
            out = out.index_select(1, used)
        # contiguous [T, C, 1, 1] masks: strided ones ran the products 3x slower
        keep, reuse = (actions[..., a].index_select(1, used)[..., None, None] for a in (KEEP, REUSE))
        fused = out * keep
        fused[1:].addcmul_(out[:-1], reuse[1:])
        return conv(fused, weights.conv2_columns(used), None, block.conv2)


def install_policies(model_or_backbone, make_hook: Callable[[str, nn.Module], PolicyHook],
                     stages: Iterable[int] = (1, 2, 3, 4)) -> list[tuple[str, PolicyHook]]:
    """Put `make_hook(block_name, block)` into the policy slot of every block of the given stages (1-based).

    Accepts a VideoModel with a `.backbone` or a bare ResNet; cost-table names are prefixed with
    "backbone." (the attribute a FrameClassifier keeps its backbone under). Returns [(block name, hook)]
    in forward order.
    """
    backbone = model_or_backbone if isinstance(model_or_backbone, ResNet) else model_or_backbone.backbone
    stages = {int(s) for s in stages}
    installed = []
    for name, block in backbone.blocks():
        if int(name.split(".")[0].removeprefix("layer")) not in stages:
            continue
        hook = make_hook(name, block)
        hook.block_name = name
        hook.conv1_name, hook.conv2_name = f"backbone.{name}.conv1", f"backbone.{name}.conv2"
        hook.channels = block.width
        block.policy = hook
        installed.append((name, hook))
    return installed


def policy_hooks(module: nn.Module) -> list[PolicyHook]:
    """Every installed PolicyHook of a model or backbone, in forward (module) order."""
    return [m for m in module.modules() if isinstance(m, PolicyHook)]


def efficiency_loss(flops: torch.Tensor, dense_flops: float, num_segments: int, lam: float, form: str,
                    target: float) -> torch.Tensor:
    """The efficiency term added to the cross entropy (Eq. 6), from per-video MACs `flops` [B].

    - "gflops" (released code): lam * GFLOPs per frame, averaged over the batch;
    - "relative": lam * (FLOPs / dense FLOPs), averaged over the batch (scale-free linear form);
    - "normalised": lam * (mean(FLOPs / dense FLOPs) - target)^2 (pulls the batch towards a budget).
    """
    if form == "gflops":
        return lam * (flops / num_segments / 1e9).mean()
    ratio = (flops / max(dense_flops, 1.0)).mean()
    if form == "relative":
        return lam * ratio
    if form == "normalised":
        return lam * (ratio - target) ** 2
    raise ValueError(f"unknown efficiency loss form {form!r} (gflops | relative | normalised)")


class PolicyClassifier(FrameClassifier):
    """TSN-style frame classifier whose blocks hold PolicyHooks; FLOPs per video follow Eq. 5.

    `efficiency`: optional {"lam", "form", "target", "flops"} for `efficiency_loss` (training only, lam > 0);
    "flops": "eq5" (default) charges the Eq. 5 cost, "upper_bound" only conv2's savings from skipping.
    Stats per video: "actions" [3] (share of all channel decisions), "per_block" [blocks, 3],
    "static" [blocks, 3] (share of a block's channels whose action never changes over the video's
    frames, split by that action).
    """

    def __init__(self, backbone: ResNet, num_classes: int, num_segments: int, dropout: float = 0.5,
                 efficiency: dict | None = None):
        super().__init__(backbone, num_classes, num_segments, dropout)
        self.efficiency = dict(efficiency or {})

    def hooks(self) -> list[PolicyHook]:
        return policy_hooks(self.backbone)

    def saved_flops(self, hooks: list[PolicyHook], conv1_savings: bool = True) -> torch.Tensor:
        """[B] MACs the policies saved on each video relative to dense conv1 + conv2 (Eq. 5). Without
        `conv1_savings` only conv2's savings from skipped input channels count, as if conv1 were dense:
        the released code's "upper bound" of the cost."""
        saved = 0.0
        for hook in hooks:
            conv1 = self.cost(hook.conv1_name) if conv1_savings else 0.0
            conv2 = self.cost(hook.conv2_name)
            saved = saved + (conv1 + conv2) - eq5_flops(hook.actions, conv1 / self.num_segments,
                                                        conv2 / self.num_segments)
        return saved

    def policy_stats(self, hooks: list[PolicyHook]) -> dict[str, torch.Tensor]:
        per_block, static, counts = [], [], []
        for hook in hooks:
            actions = hook.actions.detach()                       # [B, T, C, 3]
            per_block.append(actions.mean((1, 2)))
            index = actions.argmax(-1)                            # [B, T, C]
            unchanged = (index == index[:, :1]).all(1)            # [B, C]
            static.append(torch.stack([(unchanged & (index[:, 0] == k)).float().mean(1) for k in range(3)], -1))
            counts.append(actions.shape[2])
        per_block = torch.stack(per_block, 1)                     # [B, blocks, 3]
        weights = per_block.new_tensor(counts) / sum(counts)
        return {"actions": (per_block * weights[None, :, None]).sum(1), "per_block": per_block,
                "static": torch.stack(static, 1)}

    def forward(self, clips):
        batch = clips.shape[0]
        logits = self.fc(self.dropout(self.frame_features(clips))).mean(1)
        hooks = self.hooks()
        static = self.static_flops(batch).to(logits.device)
        if not hooks:
            return VideoOutput(logits, static)
        flops = static - self.saved_flops(hooks)
        losses = {}
        lam = float(self.efficiency.get("lam", 0.0) or 0.0)
        if self.training and lam > 0:
            upper_bound = self.efficiency.get("flops", "eq5") == "upper_bound"
            charged = static - self.saved_flops(hooks, conv1_savings=False) if upper_bound else flops
            losses["efficiency"] = efficiency_loss(charged, self.dense_flops, self.num_segments, lam,
                                                   self.efficiency.get("form", "gflops"),
                                                   float(self.efficiency.get("target", 0.0) or 0.0))
        return VideoOutput(logits, flops, losses, self.policy_stats(hooks))

    def block_names(self) -> list[str]:
        return [hook.block_name for hook in self.hooks()]

    def summarize(self, stats: dict) -> dict:
        """Per-video means from the evaluator -> the policy summary written to metrics.json["stats"]."""
        if "actions" not in stats:
            return stats
        skip, reuse, keep = (float(v) for v in stats["actions"])
        blocks = []
        for name, fractions, static in zip(self.block_names(), stats["per_block"], stats["static"]):
            row = {"block": name, **{a: float(v) for a, v in zip(ACTIONS, fractions)}}
            row.update({f"static_{a}": float(v) for a, v in zip(ACTIONS, static)})
            row["static"] = float(sum(static))
            blocks.append(row)
        counts = [hook.channels or 1 for hook in self.hooks()]
        total = sum(counts)
        static_by_action = {a: sum(c * b[f"static_{a}"] for c, b in zip(counts, blocks)) / total for a in ACTIONS}
        return {"skip": skip, "reuse": reuse, "keep": keep,
                "reuse_over_keep": reuse / keep if keep > 0 else None,
                "per_block": blocks, "static_share": sum(static_by_action.values()),
                "static": static_by_action}
