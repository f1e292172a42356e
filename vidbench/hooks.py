"""Hook modules that methods install into residual blocks (see `vidbench.backbones`)."""
from __future__ import annotations

import torch
from torch import nn

from vidbench.backbones import ResNet


class TemporalShift(nn.Module):
    """TSM: move 1/fold_div of the channels one frame back in time and 1/fold_div forward (zero padded).

    `online=True` shifts only from the past (causal), as frame-by-frame models need. A shift is memory
    movement only: it costs no multiply-adds. An online shift can also take a video in chunks of frames
    (`stream_shifts`): the first frame of a chunk then sees the last frame of the chunk before.
    """

    def __init__(self, num_segments: int, fold_div: int, online: bool = False):
        super().__init__()
        self.num_segments, self.fold_div, self.online = num_segments, fold_div, online
        self.chunk: int | None = None            # frames per call while streaming
        self.last: torch.Tensor | None = None    # streaming: the shifted channels of the previous call's last frame

    def forward(self, x):
        nt, channels, h, w = x.shape
        frames = self.chunk or self.num_segments
        x = x.view(nt // frames, frames, channels, h, w)
        fold = channels // self.fold_div
        out = torch.zeros_like(x)
        if self.online:
            out[:, 1:, :fold] = x[:, :-1, :fold]
            out[:, :, fold:] = x[:, :, fold:]
            if self.chunk:
                if self.last is not None:
                    out[:, 0, :fold] = self.last
                self.last = x[:, -1, :fold]
        else:
            out[:, :-1, :fold] = x[:, 1:, :fold]                     # from the next frame
            out[:, 1:, fold:2 * fold] = x[:, :-1, fold:2 * fold]     # from the previous frame
            out[:, :, 2 * fold:] = x[:, :, 2 * fold:]
        return out.view(nt, channels, h, w)


def install_shift(backbone: ResNet, num_segments: int, fold_div: int, online: bool = False,
                  shortcut: bool = False) -> None:
    """Shift the residual-branch input of every block ("blockres" placement of TSM); `shortcut` also feeds
    the shifted input to the downsample shortcut (AdaFuse^TSM)."""
    for _, block in backbone.blocks():
        block.shift = TemporalShift(num_segments, fold_div, online)
        block.shift_shortcut = shortcut


def stream_shifts(module: nn.Module, chunk: int | None, keep: torch.Tensor | None = None) -> None:
    """Set the online shifts in `module` to take the next call as `chunk` frames of the same videos
    (None: whole videos again, the carried frames dropped); `keep` [videos] bool drops the videos that
    will not come back from what the shifts carry."""
    for shift in module.modules():
        if isinstance(shift, TemporalShift):
            shift.chunk = chunk
            if chunk is None:
                shift.last = None
            elif keep is not None and shift.last is not None:
                shift.last = shift.last[keep]
