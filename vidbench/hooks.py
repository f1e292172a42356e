"""Hook modules that methods install into residual blocks (see `vidbench.backbones`)."""
from __future__ import annotations

import torch
from torch import nn

from vidbench.backbones import ResNet


class TemporalShift(nn.Module):
    """TSM: move 1/fold_div of the channels one frame back in time and 1/fold_div forward (zero padded).

    `online=True` shifts only from the past (causal), as frame-by-frame models need. A shift is memory
    movement only: it costs no multiply-adds.
    """

    def __init__(self, num_segments: int, fold_div: int = 8, online: bool = False):
        super().__init__()
        self.num_segments, self.fold_div, self.online = num_segments, fold_div, online

    def forward(self, x):
        nt, channels, h, w = x.shape
        x = x.view(nt // self.num_segments, self.num_segments, channels, h, w)
        fold = channels // self.fold_div
        out = torch.zeros_like(x)
        if self.online:
            out[:, 1:, :fold] = x[:, :-1, :fold]
            out[:, :, fold:] = x[:, :, fold:]
        else:
            out[:, :-1, :fold] = x[:, 1:, :fold]                     # from the next frame
            out[:, 1:, fold:2 * fold] = x[:, :-1, fold:2 * fold]     # from the previous frame
            out[:, :, 2 * fold:] = x[:, :, 2 * fold:]
        return out.view(nt, channels, h, w)


def install_shift(backbone: ResNet, num_segments: int, fold_div: int = 8, online: bool = False,
                  shortcut: bool = False) -> None:
    """Shift the residual-branch input of every block ("blockres" placement of TSM); `shortcut` also feeds
    the shifted input to the downsample shortcut (AdaFuse^TSM)."""
    for _, block in backbone.blocks():
        block.shift = TemporalShift(num_segments, fold_div, online)
        block.shift_shortcut = shortcut
