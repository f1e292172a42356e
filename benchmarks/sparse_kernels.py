"""Why per-frame channel sets do not turn into time on a CPU: the dense kernels' speed per multiply-add
for the ways a sparse path can cut one ResNet18 convolution (3x3, 8 frames, channels-last).

    python benchmarks/sparse_kernels.py [--share 0.4] [--repeats 15] [--threads N]

For each stage (64 channels at 56x56 ... 512 at 7x7) and a share of the channels (0.4: what conv2 reads
under AdaFuse's headline mix 0.6/0.2/0.2), times

- dense: every channel, all frames in one call (what TSN runs);
- per frame, every channel: the same work as one call per frame with the whole weight (a control: what
  calling per frame costs by itself, without gathering channels);
- same channels: one call over all frames for a share of the output (conv1) or input (conv2) channels,
  the same for every frame (what the policy blocks' sparse path runs per video), also with the count
  rounded up to a multiple of 8;
- grouped: each frame its own channels, the frames as the groups of one call (weights gathered per frame);
- per frame: each frame its own channels, one call per frame;
- gathered GEMM: each frame its own channels, as im2col (F.unfold) and one batched matrix product over the
  frames with the weights gathered per frame (the "kernel that takes a channel list per frame", in torch).

and prints milliseconds (the fastest of --repeats) and speed per multiply-add relative to dense (1.0: a
channel costs what it costs in the dense call).
"""
from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F

FRAMES = 8
STAGES = [(64, 56), (128, 28), (256, 14), (512, 7)]


def fastest(call, repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def channels_last(*shape) -> torch.Tensor:
    return torch.randn(*shape).contiguous(memory_format=torch.channels_last)


def operands(channels: int, size: int, share: float):
    """One stage's input [T, C, H, W] (channels-last), conv weight [C, C, 3, 3] and each frame's channels [T, kept]."""
    kept = round(share * channels)
    x, weight = channels_last(FRAMES, channels, size, size), torch.randn(channels, channels, 3, 3)
    per_frame = torch.stack([torch.randperm(channels)[:kept] for _ in range(FRAMES)])
    return x, weight, per_frame


def cases(x: torch.Tensor, weight: torch.Tensor, per_frame: torch.Tensor):
    """Name -> (call, multiply-adds as a share of the dense call's). Each call returns its result, frame-major:
    conv1 cases the kept output channels (the first `kept`, or each frame's own), conv2 cases all outputs
    from the kept input channels only."""
    channels, size, kept = x.shape[1], x.shape[2], per_frame.shape[1]
    aligned = min(math.ceil(kept / 8) * 8, channels)
    rows = (per_frame + torch.arange(FRAMES)[:, None] * channels).flatten()
    grouped_in = x.permute(0, 2, 3, 1).reshape(FRAMES, size * size, channels)

    def grouped_inputs():
        picked = grouped_in.permute(1, 0, 2).reshape(size * size, -1)[:, rows]
        picked = picked.view(1, size, size, -1).permute(0, 3, 1, 2)
        weights = weight[:, per_frame.flatten()].view(channels, FRAMES, kept, 3, 3).transpose(0, 1).flatten(0, 1)
        return F.conv2d(picked, weights, padding=1, groups=FRAMES)

    def grouped_outputs():
        frames = x.permute(2, 3, 0, 1).reshape(1, size, size, -1).permute(0, 3, 1, 2)
        return F.conv2d(frames, weight[per_frame.flatten()], padding=1, groups=FRAMES)

    def loop(outputs: bool):
        results = []
        for t in range(FRAMES):
            index = per_frame[t]
            if outputs:
                results.append(F.conv2d(x[t:t + 1], weight[index], padding=1))
            else:
                results.append(F.conv2d(x[t:t + 1, index], weight[:, index], padding=1))
        return results

    frame_index = torch.arange(FRAMES)[:, None]

    def gemm_inputs():
        columns = F.unfold(x[frame_index, per_frame], 3, padding=1)                         # [T, kept*9, HW]
        weights = weight[:, per_frame].transpose(0, 1).reshape(FRAMES, channels, kept * 9)
        return torch.bmm(weights, columns)

    def gemm_outputs():
        columns = F.unfold(x, 3, padding=1)                                                 # [T, C*9, HW]
        return torch.bmm(weight[per_frame].reshape(FRAMES, kept, channels * 9), columns)

    inputs = x[:, :kept].contiguous(memory_format=torch.channels_last)
    in_weight, out_weight, out_aligned = weight[:, :kept].contiguous(), weight[:kept], weight[:aligned]
    return {
        "dense": (lambda: F.conv2d(x, weight, padding=1), 1.0),
        "per frame, every channel": (lambda: [F.conv2d(x[t:t + 1], weight, padding=1) for t in range(FRAMES)], 1.0),
        "same channels, conv1 (outputs)": (lambda: F.conv2d(x, out_weight, padding=1), kept / channels),
        f"  ... rounded up to {aligned}": (lambda: F.conv2d(x, out_aligned, padding=1), kept / channels),
        "same channels, conv2 (inputs)": (lambda: F.conv2d(inputs, in_weight, padding=1), kept / channels),
        "grouped, conv1 (outputs)": (grouped_outputs, kept / channels),
        "grouped, conv2 (inputs)": (grouped_inputs, kept / channels),
        "per frame, conv1 (outputs)": (lambda: loop(True), kept / channels),
        "per frame, conv2 (inputs)": (lambda: loop(False), kept / channels),
        "gathered GEMM, conv1 (outputs)": (gemm_outputs, kept / channels),
        "gathered GEMM, conv2 (inputs)": (gemm_inputs, kept / channels),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--share", type=float, default=0.4)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {FRAMES} frames, share {args.share} of the channels; "
          "ms (fastest of {}) and speed per multiply-add relative to dense".format(args.repeats))
    with torch.no_grad():
        for channels, size in STAGES:
            print(f"\n{channels} channels at {size}x{size}")
            dense = None
            for name, (call, work) in cases(*operands(channels, size, args.share)).items():
                ms = fastest(call, args.repeats)
                dense = dense or ms
                print(f"  {name:<34} {ms:7.2f} ms  speed {work * dense / ms:5.2f}")


if __name__ == "__main__":
    main()
