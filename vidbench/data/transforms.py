"""Clip transforms on uint8 frames: the same crop / flip for every frame of a clip.

Training: TSN multi-scale crop (scales 1, .875, .75, .66; crop width and height chosen independently
among neighbouring scales; 13 fixed offsets), resized to input_size x input_size; optional horizontal
flip. Evaluation: short side resized to scale_size, centre crop input_size. Then /255 and mean/std.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SCALES = (1.0, 0.875, 0.75, 0.66)
MAX_DISTORT = 1


def _randint(n: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(n, (1,), generator=generator).item())


def crop_sizes(height: int, width: int, input_size: int, scales=SCALES, max_distort: int = MAX_DISTORT
               ) -> list[tuple[int, int]]:
    """Candidate (crop_h, crop_w) pairs of the multi-scale crop."""
    base = min(height, width)
    sizes = [int(base * s) for s in scales]
    sizes = [input_size if abs(s - input_size) < 3 else s for s in sizes]  # snap near-input sizes
    pairs = []
    for i, h in enumerate(sizes):
        for j, w in enumerate(sizes):
            if abs(i - j) <= max_distort:
                pairs.append((max(1, min(h, height)), max(1, min(w, width))))
    return pairs


def fixed_offsets(height: int, width: int, crop_h: int, crop_w: int) -> list[tuple[int, int]]:
    """The 13 (top, left) offsets: 4 corners, centre, and 8 more on a 4x4 step grid."""
    hs, ws = (height - crop_h) // 4, (width - crop_w) // 4
    grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2),  # corners + centre as (row, col) steps
            (2, 0), (2, 4), (4, 2), (0, 2),  # centre of each side
            (1, 1), (1, 3), (3, 1), (3, 3)]  # quarter points
    return [(r * hs, c * ws) for r, c in grid]


def multiscale_crop_box(height: int, width: int, input_size: int, generator=None) -> tuple[int, int, int, int]:
    """Random (top, left, crop_h, crop_w) of the training multi-scale crop."""
    pairs = crop_sizes(height, width, input_size)
    crop_h, crop_w = pairs[_randint(len(pairs), generator)]
    offsets = fixed_offsets(height, width, crop_h, crop_w)
    top, left = offsets[_randint(len(offsets), generator)]
    return top, left, crop_h, crop_w


def resize(clip: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear antialiased resize of a [T, 3, H, W] clip (no-op when the size already matches). A uint8 clip
    on the CPU stays uint8 (the fast kernel); on other devices, which have no uint8 kernel, it is resized in
    float32."""
    if tuple(clip.shape[-2:]) == tuple(size):
        return clip
    if clip.device.type != "cpu":
        clip = clip.float()
    return F.interpolate(clip, size=size, mode="bilinear", antialias=True, align_corners=False)


def normalize(clips: torch.Tensor, mean, std) -> torch.Tensor:
    """Clips [..., 3, H, W] of values 0-255 (uint8 or float, any strides) -> contiguous float32
    (x / 255 - mean) / std on the clips' device; a contiguous float32 input is normalised in place."""
    mean = torch.as_tensor(mean, dtype=torch.float64).view(3, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float64).view(3, 1, 1)
    scale = (1.0 / (255.0 * std)).to(device=clips.device, dtype=torch.float32)
    bias = (-mean / std).to(device=clips.device, dtype=torch.float32)
    return clips.to(torch.float32, memory_format=torch.contiguous_format).mul_(scale).add_(bias)


class ClipTransform:
    """The T uint8 [H, W, 3] frames of a clip (arrays or tensors, or one [T, H, W, 3]) -> normalised
    float32 [T, 3, S, S] clip, in two parts that may run in different places:

    * `cut`, in a loader worker: the frames' uint8 crop, flipped when the draw says so, still at its own
      size (training), or the finished evaluation clip (short side resized, centre crop);
    * `finish`, wherever the batch goes (the training device): the resize of the cut to S x S.

    Flipping before the resize gives the same pixels as flipping after (the filter is symmetric), and the
    cut leaves the frames channels-last as decoded, which is what the uint8 resize is fastest on.
    """

    def __init__(self, *, train: bool, input_size: int, scale_size: int, flip: bool = False,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD):
        if not train and scale_size < input_size:
            raise ValueError(f"scale_size ({scale_size}) must be >= input_size ({input_size})")
        self.train, self.input_size, self.scale_size, self.flip = bool(train), int(input_size), int(scale_size), bool(flip)
        self.mean, self.std = tuple(mean), tuple(std)

    def cut(self, frames, generator=None) -> list[np.ndarray]:
        """The clip's T uint8 [h, w, 3] frames (views where possible) before the final resize."""
        s = self.input_size
        h, w = frames[0].shape[:2]
        if self.train:
            top, left, ch, cw = multiscale_crop_box(h, w, s, generator)
            step = -1 if self.flip and _randint(2, generator) == 1 else 1
            return [np.asarray(frame)[top:top + ch, left:left + cw][:, ::step] for frame in frames]
        if h <= w:
            nh, nw = self.scale_size, int(self.scale_size * w / h)
        else:
            nh, nw = int(self.scale_size * h / w), self.scale_size
        clip = resize(_stack(frames), (nh, nw)).permute(0, 2, 3, 1)  # a contiguous [T, nh, nw, 3]
        top, left = int(round((nh - s) / 2.0)), int(round((nw - s) / 2.0))
        return list(clip[:, top:top + s, left:left + s].numpy())

    def finish(self, clip: torch.Tensor) -> torch.Tensor:
        """A cut stacked into uint8 [T, h, w, 3] (on any device) -> the [T, 3, S, S] clip (see `resize`)."""
        return resize(clip.permute(0, 3, 1, 2), (self.input_size, self.input_size))

    def __call__(self, frames, generator=None) -> torch.Tensor:
        clip = self.finish(torch.from_numpy(np.stack(self.cut(frames, generator))))
        return normalize(clip, self.mean, self.std)


def _stack(frames) -> torch.Tensor:
    """uint8 [H, W, 3] frames -> the [T, 3, H, W] channels-last view of their stack."""
    return torch.from_numpy(np.stack([np.asarray(frame) for frame in frames])).permute(0, 3, 1, 2)
