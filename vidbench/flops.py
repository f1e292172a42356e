"""FLOP metering: dense per-module costs from fvcore, on which every model builds its per-sample cost.

One multiply-add counts as one FLOP, as in the AdaFuse paper, fvcore and mmaction2. fvcore cannot see
LSTM cells or work that a mask or a gate skips: models add the former through `extra_flops()` and
compute the latter per sample from `model.costs`.
"""
from __future__ import annotations

import torch
from torch import nn

from vidbench.model import VideoModel


class _LogitsOnly(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, clips):
        return self.model(clips).logits


def count_modules(model: VideoModel, clip_shape: tuple[int, ...]) -> dict[str, float]:
    """MACs of one video of `clip_shape` (T, C, H, W) per module name ('' is the total)."""
    from fvcore.nn import FlopCountAnalysis  # imported here: evaluation reuses the table training saved

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analysis = FlopCountAnalysis(_LogitsOnly(model), torch.zeros(1, *clip_shape))
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            counts = analysis.by_module()
    finally:
        model.train(was_training)
    return {name.removeprefix("model").removeprefix("."): float(n) for name, n in counts.items()}


def attach(model: VideoModel, clip_shape: tuple[int, ...]) -> VideoModel:
    """Give the model its per-module cost table and its dense cost per video."""
    return attach_costs(model, count_modules(model, clip_shape))


def attach_costs(model: VideoModel, costs: dict[str, float]) -> VideoModel:
    """Attach a cost table counted before (training saves it, so evaluation need not trace again)."""
    model.costs = dict(costs)
    model.dense_flops = model.costs[""] + model.extra_flops()
    return model


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
