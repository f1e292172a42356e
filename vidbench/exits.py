"""Dynamic early exit (Wu et al., "Dynamic Inference", 2020): classifiers ("checkpoints") at several
depths (or after several frames); a video stops at the first checkpoint whose top-1 softmax confidence
passes that checkpoint's threshold. Shared by the early-exit methods.

An `ExitModel` computes the video logits of every checkpoint, `exit_logits(clips)` -> [B, E, K] (the
mean of the frame logits at that checkpoint), and the cumulative MACs of a video that stops at each
checkpoint, `exit_costs()` -> [E], from the fvcore cost table (`segments()` names the modules each
checkpoint adds: a checkpoint's cost is the model's total minus what the later checkpoints add).

- Evaluation: every checkpoint is computed (so that `eval_points` can sweep the thresholds of one
  trained model on the collected per-checkpoint logits); the prediction and the FLOPs of a video are
  those of its exit checkpoint, i.e. what it ran up to there. The last checkpoint always accepts.
- Realized inference (`vidbench.sparse.set_sparse`): a video stops at its first firing checkpoint, so
  the work that runs is what its FLOPs count; videos that go on continue as a smaller batch. Same
  predictions and FLOPs as the evaluation path, but no later checkpoint's logits to sweep.
- Training: all exits jointly, the mean of their cross entropies (see `joint_exit_logits`).

Subclasses compute checkpoint by checkpoint: `begin(clips)` gives the state before the first one,
`advance(e, state)` runs up to checkpoint e and gives its video logits, `keep(state, videos)` drops
the videos that stopped.
"""
from __future__ import annotations

import torch
from torch import nn

from vidbench.metrics import accuracy
from vidbench.model import VideoModel, VideoOutput
from vidbench.sparse import Realizable

STRICT = 1.01   # a threshold no softmax confidence reaches: never exit early
DEFAULT_SWEEP = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, STRICT)


def exit_index(exit_logits: torch.Tensor, thresholds) -> torch.Tensor:
    """[B, E, K] and thresholds (a number, or one per checkpoint) -> [B] index of the first checkpoint
    whose top-1 softmax confidence is >= its threshold (the last checkpoint always accepts)."""
    passed = confident(exit_logits, per_checkpoint(thresholds, exit_logits.shape[1], exit_logits.device))
    passed[:, -1] = True
    return passed.to(torch.uint8).argmax(1)                                    # first True


def per_checkpoint(thresholds, checkpoints: int, device=None) -> torch.Tensor:
    """A number or one threshold per checkpoint (the last may be left out) -> [checkpoints]."""
    thresholds = torch.as_tensor(thresholds, dtype=torch.float32, device=device).flatten()
    if thresholds.numel() == checkpoints - 1:     # one per early checkpoint
        thresholds = torch.cat([thresholds, thresholds.new_zeros(1)])
    return thresholds.expand(checkpoints)


def confident(logits: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """[..., K] logits -> whether their top-1 softmax confidence reaches `thresholds` (broadcast)."""
    return logits.float().softmax(-1).amax(-1) >= thresholds


def joint_exit_logits(exit_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross entropy over the exits, in the trainer's form `CE(logits, y) + loss`, without labels.

    CE(z, y) = logsumexp(z) - z_y, so with L = mean_e z_e:
        mean_e CE(z_e, y) = CE(L, y) + [mean_e logsumexp(z_e) - logsumexp(L)]
    The bracket (>= 0: logsumexp is convex) does not depend on y: it is returned as the loss term."""
    logits = exit_logits.mean(1)
    extra = exit_logits.logsumexp(-1).mean(1) - logits.logsumexp(-1)
    return logits, extra.mean()


def cumulative_costs(costs: dict[str, float], segments: list[list[str]]) -> list[float]:
    """MACs of a video that stops at each checkpoint: the total minus the modules of later checkpoints."""
    added = [sum(costs.get(name, 0.0) for name in names) for names in segments]
    total = costs.get("", 0.0)
    return [total - sum(added[e + 1:]) for e in range(len(segments))]


def threshold_label(value: float) -> str:
    if value <= 0:
        return "first exit"
    if value > 1:
        return "no early exit"
    return f"thr {value:g}"


class ExitModel(VideoModel, Realizable):
    """Base of the early-exit models. `threshold`: one number for every checkpoint or a list (one per
    checkpoint; the last entry is ignored); `sweep`: the common thresholds of `eval_points`;
    `force_exit`: every video stops at that checkpoint index (tests)."""

    evaluates_sparse = False    # the threshold sweep of `eval_points` needs every checkpoint's logits

    def __init__(self, num_segments: int, threshold, sweep=DEFAULT_SWEEP, force_exit: int | None = None):
        super().__init__(num_segments)
        self.threshold, self.sweep, self.force_exit = threshold, list(sweep), force_exit

    # ---- what subclasses provide
    def begin(self, clips: torch.Tensor):
        """The state before the first checkpoint."""
        raise NotImplementedError

    def advance(self, e: int, state) -> tuple[object, torch.Tensor]:
        """Run from checkpoint e-1 to checkpoint e: (the new state, checkpoint e's video logits [videos, K])."""
        raise NotImplementedError

    def keep(self, state, videos: torch.Tensor):
        """The state of the videos [videos] (bool) that go on. Default: tensors (or lists of them, None
        allowed) of frames [videos * T, ...]."""
        def pick(x):
            return None if x is None else x.view(-1, self.num_segments, *x.shape[1:])[videos].flatten(0, 1)
        return [pick(x) for x in state] if isinstance(state, list) else pick(state)

    def end(self) -> None:
        """Called after a realized pass (streaming state to drop)."""

    def segments(self) -> list[list[str]]:
        """Cost-table names of the modules each checkpoint adds to the previous one."""
        raise NotImplementedError

    def checkpoint_names(self) -> list[str]:
        raise NotImplementedError

    # ---- shared
    def exit_costs(self) -> torch.Tensor:
        return torch.tensor(cumulative_costs(self.costs, self.segments()), dtype=torch.float64)

    def exit_logits(self, clips: torch.Tensor) -> torch.Tensor:
        """Every checkpoint's video logits [B, E, K]."""
        state, logits = self.begin(clips), []
        for e in range(len(self.checkpoint_names())):
            state, z = self.advance(e, state)
            logits.append(z)
        return torch.stack(logits, 1)

    def choose(self, exit_logits: torch.Tensor, thresholds=None) -> torch.Tensor:
        if self.force_exit is not None:
            return torch.full(exit_logits.shape[:1], self.force_exit, dtype=torch.long, device=exit_logits.device)
        return exit_index(exit_logits.detach(), self.threshold if thresholds is None else thresholds)

    def forward(self, clips):
        if self.sparse and not self.training:
            return self.forward_realized(clips)
        z = self.exit_logits(clips)                                   # [B, E, K]
        index = self.choose(z)
        flops = self.exit_costs().to(z.device)[index].float()
        losses = {}
        if self.training:
            logits, losses["exits"] = joint_exit_logits(z)
        else:
            logits = z[torch.arange(z.shape[0], device=z.device), index]
        stats = {"exit_at": nn.functional.one_hot(index, z.shape[1]).float(), "exit_logits": z.detach()}
        return VideoOutput(logits, flops, losses, stats)

    def forward_realized(self, clips):
        """Each video runs only up to its first firing checkpoint."""
        checkpoints = len(self.checkpoint_names())
        thresholds = per_checkpoint(self.threshold, checkpoints, clips.device).tolist()
        going = torch.arange(clips.shape[0], device=clips.device)
        index = torch.empty_like(going)
        state, logits = self.begin(clips), None
        try:
            for e in range(checkpoints):
                state, z = self.advance(e, state)
                if logits is None:
                    logits = z.new_empty(clips.shape[0], z.shape[1])
                if e == checkpoints - 1 or self.force_exit == e:
                    stop = torch.ones_like(going, dtype=torch.bool)
                elif self.force_exit is not None:
                    stop = torch.zeros_like(going, dtype=torch.bool)
                else:
                    stop = confident(z, thresholds[e])
                logits[going[stop]], index[going[stop]] = z[stop], e
                if stop.all():
                    break
                state, going = self.keep(state, ~stop), going[~stop]
        finally:
            self.end()
        flops = self.exit_costs().to(clips.device)[index].float()
        return VideoOutput(logits, flops, {}, {"exit_at": nn.functional.one_hot(index, checkpoints).float()})

    def eval_points(self, outputs: dict) -> list[dict]:
        """The accuracy/FLOPs curve of the threshold sweep (permissive to strict) from one trained model."""
        z, labels = outputs["stats.exit_logits"], outputs["labels"]
        costs = self.exit_costs()
        points = []
        for value in sorted(self.sweep):
            index = exit_index(z, value)
            top1, top5 = accuracy(z[torch.arange(len(index)), index], labels)
            points.append({"point": threshold_label(value), "threshold": value, "top1": top1, "top5": top5,
                           "gflops": costs[index].mean().item() / 1e9,
                           "exit_share": torch.bincount(index, minlength=z.shape[1]).div(len(index)).tolist()})
        return points

    def summarize(self, stats: dict) -> dict:
        stats = {k: v for k, v in stats.items() if k != "exit_logits"}
        share = stats.get("exit_at")
        if share is not None:
            stats["exit_checkpoints"] = self.checkpoint_names()
            stats["checkpoint_gflops"] = [c / 1e9 for c in self.exit_costs().tolist()]
            stats["mean_exit"] = sum(i * s for i, s in enumerate(share))
        return stats


def feature_channels(stage: nn.Sequential) -> int:
    """Output channels of a ResNet stage (its last block's last BN)."""
    block = stage[-1]
    return getattr(block, "bn3", block.bn2).num_features


class ExitHead(nn.Module):
    """A checkpoint classifier on frame features [N*T, C, H, W] -> frame logits [N*T, K]:
    optional 3x3 stride-2 conv (C -> `channels`) + BN + ReLU, global average pool, dropout, linear."""

    def __init__(self, in_channels: int, num_classes: int, channels: int | None, dropout: float):
        super().__init__()
        layers = []
        if channels:
            layers += [nn.Conv2d(in_channels, channels, 3, 2, 1, bias=False), nn.BatchNorm2d(channels),
                       nn.ReLU(inplace=True)]
            in_channels = channels
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))
