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
    """Bilinear antialiased resize of a uint8 [T, 3, H, W] clip (no-op when the size already matches)."""
    if tuple(clip.shape[-2:]) == tuple(size):
        return clip
    return F.interpolate(clip, size=size, mode="bilinear", antialias=True, align_corners=False)


def normalize(clips: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 clips [..., 3, H, W] (any strides) -> contiguous float32 (x / 255 - mean) / std, on the clips'
    device (two passes)."""
    mean = torch.as_tensor(mean, dtype=torch.float64).view(3, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float64).view(3, 1, 1)
    scale = (1.0 / (255.0 * std)).to(device=clips.device, dtype=torch.float32)
    bias = (-mean / std).to(device=clips.device, dtype=torch.float32)
    return clips.to(torch.float32, memory_format=torch.contiguous_format).mul_(scale).add_(bias)


class ClipTransform:
    """The T uint8 [H, W, 3] frames of a clip (arrays or tensors, or one [T, H, W, 3]) -> normalised
    float32 [T, 3, S, S] clip (uint8 with normalize=False).

    Training crops each frame before the frames are stacked (only the crop is copied); the stacked
    frames are never reordered to [T, 3, H, W] in memory: the permuted view is channels-last, which is
    also what the uint8 antialiased resize is fastest on.
    """

    def __init__(self, *, train: bool, input_size: int, scale_size: int, flip: bool = False,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, normalize: bool = True):
        if not train and scale_size < input_size:
            raise ValueError(f"scale_size ({scale_size}) must be >= input_size ({input_size})")
        self.train, self.input_size, self.scale_size, self.flip = bool(train), int(input_size), int(scale_size), bool(flip)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.normalize = bool(normalize)

    def geometry(self, frames, generator=None) -> torch.Tensor:
        """Crop/flip/resize the frames to a uint8 [T, 3, S, S] clip."""
        s = self.input_size
        h, w = frames[0].shape[:2]
        if self.train:
            top, left, ch, cw = multiscale_crop_box(h, w, s, generator)
            clip = _stack([frame[top:top + ch, left:left + cw] for frame in frames])
            clip = resize(clip, (s, s))
            if self.flip and _randint(2, generator) == 1:
                clip = clip.flip(-1)
            return clip
        if h <= w:
            nh, nw = self.scale_size, int(self.scale_size * w / h)
        else:
            nh, nw = int(self.scale_size * h / w), self.scale_size
        clip = resize(_stack(frames), (nh, nw))
        top, left = int(round((nh - s) / 2.0)), int(round((nw - s) / 2.0))
        return clip[:, :, top:top + s, left:left + s]

    def __call__(self, frames, generator=None) -> torch.Tensor:
        clip = self.geometry(frames, generator)
        if not self.normalize:
            return clip
        clip = clip.to(torch.float32).div_(255.0)
        return clip.sub_(self.mean).div_(self.std).contiguous()


def _stack(frames) -> torch.Tensor:
    """uint8 [H, W, 3] frames -> the [T, 3, H, W] channels-last view of their stack."""
    return torch.from_numpy(np.stack([np.asarray(frame) for frame in frames])).permute(0, 3, 1, 2)
