"""Sparse ("realized") execution at inference: compute only the channels a dynamic method's decisions use.

The masked path of a dynamic method computes every channel and zeroes the ones its decisions leave out,
so its FLOP savings are bookkeeping. A module with a second, sparse path subclasses `Realizable`;
`set_sparse(model, True)` switches every such module of a model. The sparse path serves inference only
(training keeps the masked path, whose gradients the methods need) and gives the same outputs up to
float rounding (tests/test_sparse.py).

How the work is cut into dense convolutions. Dense CPU kernels run a convolution over fewer channels in
proportionally less time only when the channels are the same for every frame of the call (and, for output
channels, their count a multiple of `ALIGN`); a call per frame, one call with the frames as groups, or
im2col and one batched matrix product (a gathered GEMM) runs at 0.07-0.65 of the dense speed per
multiply-add (benchmarks/sparse_kernels.py). So a policy block
computes, per video, one call over all its frames for the channels that any frame uses
(`vidbench.policy.PolicyHook.run_video`): a channel held by one action over the video costs its FLOPs
(a held reuse one frame more), a channel whose action changes from frame to frame costs every frame.
CGNet's gate opens channels frame by frame; `conv_outputs` computes them with an all-frames call for the
channels most frames need and one call per frame for the rest (`split_work`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WEIGHT_PIXELS = 49      # output pixels whose computation costs about one read of a call's weights (CPU)
# CPU kernels ran 24 output channels faster than 22 (a vector holds 8 floats), and each new shape of a
# call costs a kernel compilation (~1.6 ms on a 2-core CPU): counts rounded to 8 repeat shapes
ALIGN = 8


class Realizable:
    """Mixin of modules with a sparse inference path; `sparse` is switched by `set_sparse`.
    `evaluates_sparse`: False where the evaluator needs what only the masked path computes (early exit's
    threshold sweep reads every checkpoint's logits); such a module is still timed on its sparse path."""

    sparse = False
    evaluates_sparse = True


def set_sparse(model: nn.Module, on: bool) -> bool:
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
    """A mask [F, C] over frames and their maps' output pixels -> the channels computed for every frame in
    one call, and for each frame the other channels it needs.

    Per channel and call, computing f frames costs f + w frame units (w = WEIGHT_PIXELS / pixels: reading
    the channel's weights), so a channel needed in n frames goes to the all-frames call (F + w) when that
    is cheaper than n per-frame calls (n (1 + w))."""
    frames = mask.shape[0]
    weights = WEIGHT_PIXELS / pixels
    batched = mask.sum(0) > (frames + weights) / (1 + weights)
    rest = mask & ~batched
    return batched.nonzero()[:, 0], list(rest.nonzero()[:, 1].split(rest.sum(1).tolist()))


def _rows(weight: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return weight if index.numel() == weight.shape[0] else weight.index_select(0, index)


def aligned(channels: torch.Tensor, total: int) -> torch.Tensor:
    """`channels` (distinct, of 0..total-1), then as many others as make their count a multiple of ALIGN
    (or all `total`)."""
    wanted = min(-(-len(channels) // ALIGN) * ALIGN, total)
    if wanted == len(channels):
        return channels
    others = torch.ones(total, dtype=torch.bool, device=channels.device)
    others[channels] = False
    return torch.cat([channels, others.nonzero()[:wanted - len(channels), 0]])


def conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, like: nn.Conv2d) -> torch.Tensor:
    """F.conv2d with the stride, padding and dilation of `like`, on a channels-last input (CPU kernels ran
    these calls up to 2x faster channels-last than NCHW)."""
    x = x.contiguous(memory_format=torch.channels_last)
    return F.conv2d(x, weight, bias, like.stride, like.padding, like.dilation)


def conv_outputs(x: torch.Tensor, weight: torch.Tensor, like: nn.Conv2d, mask: torch.Tensor,
                 out: torch.Tensor) -> torch.Tensor:
    """out[f, c] = like(x)[f, c] where mask [F, C] is True (x, out: [F, ...]), computed by the calls of
    `split_work`; what the mask leaves out keeps what `out` held. `weight` is like's (no bias), possibly
    restricted to some input channels."""
    batched, per_frame = split_work(mask, out.shape[2] * out.shape[3])
    if len(batched):
        out.index_copy_(1, batched, conv(x, _rows(weight, batched), None, like))
    for t, channels in enumerate(per_frame):
        if len(channels):
            out[t].index_copy_(0, channels, conv(x[t:t + 1], _rows(weight, channels), None, like)[0])
    return out


def fold_batch_norm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of conv followed by bn in eval mode, as one convolution."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return conv.weight * scale.view(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


def channels_inner(weight: torch.Tensor) -> torch.Tensor:
    """A weight [out, in, kh, kw] laid out [out, kh, kw, in]: what a channels-last weight holds."""
    return weight.detach().permute(0, 2, 3, 1).contiguous()


class SparseWeights:
    """The weights a policy block's sparse calls gather from, laid out so that taking channels gives a
    channels-last weight (CPU kernels ran a 3x3 call up to 1.3x faster on one than on a contiguous
    weight): conv1 with bn1 folded in, where taking output channels copies whole rows (`conv1_rows`), and
    conv2's, whose input channels are gathered from each row (`conv2_columns`). Computed once and kept
    while none of their tensors changes (a version counter moves when a tensor is modified in place: an
    optimizer step, load_state_dict)."""

    def __init__(self):
        self.key, self.value = None, None

    def current(self, conv1: nn.Conv2d, bn: nn.BatchNorm2d, conv2: nn.Conv2d) -> "SparseWeights":
        """Refolded if any of the tensors changed since the last call; returns self."""
        tensors = (conv1.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var, conv2.weight)
        key = tuple((t.data_ptr(), t._version) for t in tensors)
        if key != self.key:
            with torch.no_grad():
                weight, bias = fold_batch_norm(conv1, bn)
                self.key = key
                self.value = (channels_inner(weight), bias, channels_inner(conv2.weight))
        return self

    def conv1_rows(self, channels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of folded conv1 for these output channels."""
        weight, bias, _ = self.value
        return weight.index_select(0, channels).permute(0, 3, 1, 2), bias.index_select(0, channels)

    def conv2_columns(self, channels: torch.Tensor) -> torch.Tensor:
        """conv2's weight for these input channels."""
        weight = self.value[2]                                          # [out, kh, kw, in]
        rows = weight.view(-1, weight.shape[-1])
        taken = rows.gather(1, channels.expand(len(rows), len(channels)))
        return taken.view(*weight.shape[:3], len(channels)).permute(0, 3, 1, 2)
