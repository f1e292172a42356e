"""The one model interface every method implements, and the frame-wise classifier most methods extend.

A video model maps clips [B, T, C, H, W] to a `VideoOutput`: per-video logits, the multiply-adds each
video actually cost, extra loss terms (already weighted) and per-video statistics.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from vidbench.backbones import ResNet, create_backbone, load_pretrained


@dataclass
class VideoOutput:
    logits: torch.Tensor                                   # [B, classes]
    flops: torch.Tensor                                    # [B] multiply-adds spent on each video
    losses: dict[str, torch.Tensor] = field(default_factory=dict)  # added to the cross entropy
    stats: dict[str, torch.Tensor] = field(default_factory=dict)   # [B, ...] per-video statistics


class VideoModel(nn.Module):
    """Base class. `vidbench.flops.attach` fills `costs` (per-module MACs of one video, from fvcore)
    and `dense_flops` (their total plus `extra_flops()`) once the model is built."""

    def __init__(self, num_segments: int):
        super().__init__()
        self.num_segments = num_segments
        self.costs: dict[str, float] = {}
        self.dense_flops = 0.0

    def extra_flops(self) -> float:
        """Multiply-adds per video that fvcore cannot see (e.g. LSTM cells)."""
        return 0.0

    def static_flops(self, batch: int) -> torch.Tensor:
        return torch.full((batch,), self.dense_flops)

    def cost(self, module_name: str) -> float:
        """MACs of one named module over one video (zero before `attach`)."""
        return self.costs.get(module_name, 0.0)


def make_backbone(name: str, cfg: dict) -> ResNet:
    backbone = create_backbone(name)
    pretrained = cfg.get("pretrained")
    if isinstance(pretrained, dict):
        pretrained = pretrained.get(name)
    if pretrained:
        load_pretrained(backbone, pretrained)
    return backbone


def init_classifier(fc: nn.Linear, std: float | None) -> None:
    """Weights N(0, std) and zero bias, as the released TSN/TSM/AdaFuse code initialises its classifier;
    std None keeps PyTorch's default (methods choose per backbone: `fc_init_std` in their method.yaml)."""
    if std is not None:
        nn.init.normal_(fc.weight, 0.0, float(std))
        nn.init.zeros_(fc.bias)


class FrameClassifier(VideoModel):
    """A 2D CNN applied to every frame; dropout + fc per frame; video logits = mean of frame logits (TSN)."""

    def __init__(self, backbone: ResNet, num_classes: int, num_segments: int, dropout: float):
        super().__init__(num_segments)
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(backbone.out_features, num_classes)

    def frame_features(self, clips: torch.Tensor) -> torch.Tensor:
        """[B, T, C, H, W] -> [B, T, features]."""
        batch, frames = clips.shape[:2]
        return self.backbone(clips.flatten(0, 1)).view(batch, frames, -1)

    def forward(self, clips: torch.Tensor) -> VideoOutput:
        logits = self.fc(self.dropout(self.frame_features(clips))).mean(1)
        return VideoOutput(logits, self.static_flops(clips.shape[0]))
