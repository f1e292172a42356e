"""Accuracy of per-video logits: what every table's Top-1 and Top-5 come from."""
from __future__ import annotations

import torch


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Top-1 and Top-5 in percent."""
    top5 = logits.topk(min(5, logits.shape[1]), 1).indices
    return (100 * (top5[:, 0] == labels).float().mean().item(),
            100 * (top5 == labels[:, None]).any(1).float().mean().item())
