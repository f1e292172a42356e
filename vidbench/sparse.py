"""Sparse ("realized") execution at inference: compute only the channels a dynamic method's decisions use.

The masked path of a dynamic method computes every channel and zeroes the ones its decisions leave out,
so its FLOP savings are bookkeeping. A module with a second, sparse path subclasses `Realizable`;
`set_sparse(model, True)` switches every such module of a model. The sparse path serves inference only
(training keeps the masked path, whose gradients the methods need) and gives the same outputs up to
float rounding (tests/test_sparse.py).

How the work is cut into dense convolutions. The decisions of one video form a mask [frames, channels]
(conv1: the output channels computed at each frame; conv2: the input channels read). A channel needed in
most of the video's frames is computed in one call over all its frames (batched, the weights read once;
the frames that do not need it cost a little wasted work), the others in one call per frame over the
channels that frame needs. Which side a channel goes to follows a cost model (`split_work`): a call
reads its gathered weights once, which costs about as much as computing `WEIGHT_PIXELS` output pixels,
so per-frame calls pay off on large maps (ResNet's early stages) and lose on the 7x7 maps of the last
stage, where a single frame's convolution is bound by reading its weights. Trained AdaFuse policies
hold most channels' action fixed over a video, which puts most of the work in the batched call.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WEIGHT_PIXELS = 49      # output pixels whose computation costs about one read of a call's weights (CPU)


class Realizable:
    """Mixin of modules with a sparse inference path; `sparse` is switched by `set_sparse`.
    `evaluates_sparse`: False where the evaluator needs what only the masked path computes (early exit's
    threshold sweep reads every checkpoint's logits); such a module is still timed on its sparse path."""

    sparse = False
    evaluates_sparse = True


def set_sparse(model: nn.Module, on: bool = True) -> bool:
    """Switch the sparse path of every `Realizable` module of `model`; False when it has none."""
    found = False
    for module in model.modules():
        if isinstance(module, Realizable):
            module.sparse = on
            found = True
    return found


def set_sparse_evaluation(model: nn.Module, requested: bool) -> bool:
    """Switch `model` to its sparse path for evaluation where `requested`, it has one and every module's
    evaluation may use it; True when it was switched."""
    realizable = [m for m in model.modules() if isinstance(m, Realizable)]
    on = requested and bool(realizable) and all(m.evaluates_sparse for m in realizable)
    set_sparse(model, on)
    return on


def split_work(mask: torch.Tensor, pixels: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One video's mask [T, C] and its maps' output pixels -> the channels computed for every frame in one
    call, and for each frame the other channels it needs.

    Per channel and call, computing f frames costs f + w frame units (w = WEIGHT_PIXELS / pixels: reading
    the channel's weights), so a channel needed in n frames goes to the all-frames call (T + w) when that
    is cheaper than n per-frame calls (n (1 + w))."""
    frames = mask.shape[0]
    weights = WEIGHT_PIXELS / pixels
    batched = mask.sum(0) > (frames + weights) / (1 + weights)
    rest = mask & ~batched
    return batched.nonzero()[:, 0], list(rest.nonzero()[:, 1].split(rest.sum(1).tolist()))


def _take(tensor: torch.Tensor | None, dim: int, index: torch.Tensor) -> torch.Tensor | None:
    if tensor is None or index.numel() == tensor.shape[dim]:
        return tensor
    return tensor.index_select(dim, index)


def _conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, conv: nn.Conv2d) -> torch.Tensor:
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation)


def conv_outputs(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, conv: nn.Conv2d,
                 mask: torch.Tensor, out: torch.Tensor, relu: bool = False) -> torch.Tensor:
    """out[f, c] = conv(x)[f, c] (+ bias, then ReLU if `relu`) where mask [N, T, C] is True (x, out:
    [N*T, ...]), computed by the calls of `split_work`; what the mask leaves out keeps what `out` held.
    `weight` and `bias` are conv's, possibly with a BN folded in or restricted to some input channels."""
    videos, frames = mask.shape[:2]
    finish = F.relu_ if relu else (lambda y: y)
    for v in range(videos):
        first = v * frames
        batched, per_frame = split_work(mask[v], out.shape[2] * out.shape[3])
        if len(batched):
            y = _conv(x[first:first + frames], _take(weight, 0, batched), _take(bias, 0, batched), conv)
            out[first:first + frames].index_copy_(1, batched, finish(y))
        for t, channels in enumerate(per_frame, first):
            if len(channels):
                y = _conv(x[t:t + 1], _take(weight, 0, channels), _take(bias, 0, channels), conv)
                out[t].index_copy_(0, channels, finish(y)[0])
    return out


def conv_inputs(source: torch.Tensor, rows: torch.Tensor, conv: nn.Conv2d, mask: torch.Tensor,
                weight: torch.Tensor | None = None) -> torch.Tensor:
    """[N*T, C_out, H', W']: conv (with `weight`, by default its own) over the input channels each frame
    reads (mask [N, T, C]), the input of frame f and channel c being row rows[f, c] of `source` [R, H, W]
    (which holds a row of zeros for the entries the all-frames call covers but a frame does not read);
    computed by the calls of `split_work`."""
    weight = conv.weight if weight is None else weight
    videos, frames = mask.shape[:2]
    size = _output_size(conv, source.shape[1:])
    out = []
    for v in range(videos):
        first = v * frames
        batched, per_frame = split_work(mask[v], size[0] * size[1])
        if len(batched):
            picked = source.index_select(0, rows[first:first + frames, batched].flatten())
            video = _conv(picked.view(frames, len(batched), *source.shape[1:]), _take(weight, 1, batched), None, conv)
        else:
            video = source.new_zeros(frames, conv.out_channels, *size)
        for t, channels in enumerate(per_frame):
            if len(channels):
                picked = source.index_select(0, rows[first + t, channels])[None]
                video[t] += _conv(picked, _take(weight, 1, channels), None, conv)[0]
        out.append(video)
    return out[0] if videos == 1 else torch.cat(out)


def _output_size(conv: nn.Conv2d, size) -> tuple[int, int]:
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                 for n, k, s, p, d in zip(size, conv.kernel_size, conv.stride, conv.padding, conv.dilation))


def fold_batch_norm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of conv followed by bn in eval mode, as one convolution."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return conv.weight * scale.view(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


class SparseWeights:
    """The weights a policy block's sparse calls read: conv1 with bn1 folded in, and conv2's, NCHW-contiguous
    (in a channels-last model too: the calls gather channels, and NCHW calls on gathered channels ran
    faster than channels-last ones in a rough 1-thread CPU comparison, README "Realized efficiency").
    Computed once and kept while none of their tensors changes (a version counter moves when a tensor is
    modified in place: an optimizer step, load_state_dict)."""

    def __init__(self):
        self.key, self.value = None, None

    def get(self, conv1: nn.Conv2d, bn: nn.BatchNorm2d, conv2: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tensors = (conv1.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var, conv2.weight)
        key = tuple((t.data_ptr(), t._version) for t in tensors)
        if key != self.key:
            with torch.no_grad():
                weight, bias = fold_batch_norm(conv1, bn)
                self.key, self.value = key, (weight.contiguous(), bias, conv2.weight.contiguous())
        return self.value
