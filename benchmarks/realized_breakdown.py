"""Where the time of a realized forward goes: TSN and AdaFuse (replayed, realized path) by kind of work.

    python benchmarks/realized_breakdown.py [--backbones resnet18 resnet50] [--threads 1 2] [--repeats 5]
                                            [--rounds 3] [--runs results/runs]

Profiles (torch.profiler, CPU) one video of 8 x 224 x 224 through TSN and through AdaFuse's realized path
at realized_speed's headline mix, with the trained runs' static share under --runs and with every channel
holding its action (static 1.00), and sums each operator's own CPU time into

- convolution: every convolution, the sparse path's included (the work AdaFuse's FLOPs shrink);
- batch norm: the BatchNorm2d layers the sparse path does not fold (bn2 and after, the shortcut's);
- policy: AdaFuse's policy nets and their argmax, which the replay runs before it substitutes its draws
  (all of `decide`);
- sparse extra: the sparse path's work besides its convolutions (weight and channel gathers, Eq. 3's fuse);
- Python: time in no operator (the interpreter between operators);
- other: ReLU, residual adds, pooling, the classifier.

Each category is printed in ms per forward, and AdaFuse's also as a share of TSN's time in that category,
beside the share of TSN's convolution multiply-adds the realized convolutions execute. Under each AdaFuse
case, two bounds, each a latency saving and that over the case's FLOP saving:

- `conv bound`: its convolutions alone, if they shrank with the multiply-adds they run, at TSN's time per
  multiply-add, and nothing else changed (TSN's convolution share of time x the multiply-adds saved): what
  is left for the realized share when the rest of the forward (batch norm, ReLU, residual adds, pooling,
  which FLOPs do not count) keeps TSN's time;
- `kernel bound`: the same if the convolutions ran only the multiply-adds the FLOP count gives them (a
  kernel that takes a channel list per frame, at dense speed), less the policy nets' profiled time: what
  any sparse kernel could realize with AdaFuse's decisions paid for and no other work of its own.

Every case is profiled once per round (--rounds), in an order shuffled afresh each round, and each
category's time is its median over the rounds (memory-bound operators such as batch norm vary 2x from one
profiled run of the same model to the next on a shared host). The profiler adds its own overhead per
operator, so the totals run above realized_speed's latencies; what the breakdown shows is which kind of
work keeps AdaFuse's time from falling as its FLOPs do, at each thread count.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parent))

import realized_speed as rs  # noqa: E402
from vidbench.engine import keep_freed_memory  # noqa: E402
from vidbench.sparse import set_sparse  # noqa: E402

CATEGORIES = ("convolution", "batch norm", "policy", "sparse extra", "Python", "other")
REGIONS = {"forward", "policy", "sparse"}   # the labelled regions; their own time is the interpreter's


def labelled(function, label: str):
    def run(*args, **kwargs):
        with record_function(label):
            return function(*args, **kwargs)
    return run


def label_regions(model):
    """Wrap each policy hook's decisions and sparse block run in named profiler regions."""
    for hook in model.hooks():
        hook.decide = labelled(hook.decide, "policy")
        hook.run = labelled(hook.run, "sparse")
    return model


def category(event) -> str:
    """The category of one profiler event's own time (see the module docstring)."""
    regions, parent = set(), event
    while parent is not None:
        regions.add(parent.name)
        parent = parent.cpu_parent
    if event.name in REGIONS:
        return "Python"
    if "policy" in regions:
        return "policy"
    if "conv" in event.name:
        return "convolution"
    if "batch_norm" in event.name:
        return "batch norm"
    return "sparse extra" if "sparse" in regions else "other"


def breakdown(model, clips, repeats: int) -> dict[str, float]:
    """ms per forward of `model`'s realized path in each category, over `repeats` profiled forwards after
    two warm-up ones."""
    set_sparse(model, True)
    with torch.no_grad():
        for _ in range(2):
            model(clips)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(repeats):
                with record_function("forward"):
                    model(clips)
    set_sparse(model, False)
    totals = dict.fromkeys(CATEGORIES, 0.0)
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CPU:
            totals[category(event)] += event.self_cpu_time_total / 1000 / repeats
    return totals


def cases(backbone: str, static: float) -> dict[str, object]:
    label = "/".join(f"{v:g}" for v in rs.HEADLINE)
    models = {"TSN": rs.build("tsn", backbone)}
    for held in sorted({static, 1.0}):
        model = rs.adafuse(backbone, mix=rs.HEADLINE, static=held)
        models[f"AdaFuse {label} static {held:.2f}"] = label_regions(model)
    return models


def median_breakdowns(models: dict, clips, repeats: int, rounds: int) -> dict[str, dict[str, float]]:
    """Name -> each category's median ms per forward over `rounds` rounds, each profiling every case once
    in a fresh order (drift between rounds hits all cases alike)."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in models}
    for _ in range(rounds):
        for name in random.sample(list(models), len(models)):
            samples[name].append(breakdown(models[name], clips, repeats))
    return {name: {c: statistics.median(s[c] for s in runs) for c in CATEGORIES} for name, runs in samples.items()}


def counted_conv_share(model, gflops: float, tsn) -> float:
    """The share of TSN's convolution multiply-adds that `model`'s FLOP count, `gflops` per video, gives its
    convolutions: their dense cost less what its decisions save (every saving of a policy block is in its
    convolutions; the rest of its cost table, policy nets included, is dense)."""
    def conv_macs(m):
        return sum(m.costs[name] for name, module in m.named_modules() if isinstance(module, nn.Conv2d))
    saved = model.dense_flops - gflops * 1e9
    return (conv_macs(model) - saved) / conv_macs(tsn)


def conv_bound(tsn_ms: dict[str, float], conv_macs_share: float, flop_saving: float,
               own_ms: float = 0.0) -> tuple[float, float]:
    """(latency saving, that over the FLOP saving) if only the convolutions shrank, with their multiply-adds,
    from TSN's profile `tsn_ms`, and the case added `own_ms` of work of its own."""
    total = sum(tsn_ms.values())
    saving = tsn_ms["convolution"] / total * (1 - conv_macs_share) - own_ms / total
    return saving, saving / flop_saving


def report(models: dict, measured: dict[str, tuple[float, float]], clips, repeats: int, rounds: int) -> None:
    """One line of ms per category for each case; under each AdaFuse case, its shares of TSN's and its
    convolution and kernel bounds. `measured`: name -> (GFLOPs, convolution GMACs run) of its realized
    forward."""
    figures = median_breakdowns(models, clips, repeats, rounds)
    tsn = figures["TSN"]
    conv_macs = {name: m[1] for name, m in measured.items()}
    print(f"{'case':<32} {'total':>7} " + " ".join(f"{c:>12}" for c in CATEGORIES) + f" {'conv MACs':>9}")
    for name, ms in figures.items():
        print(f"{name:<32} {sum(ms.values()):7.1f} " + " ".join(f"{ms[c]:12.1f}" for c in CATEGORIES))
        if name != "TSN":
            shares = " ".join(f"{ms[c] / tsn[c]:12.2f}" if tsn[c] > 0 else f"{'-':>12}" for c in CATEGORIES)
            macs_share = conv_macs[name] / conv_macs["TSN"]
            print(f"{'  / TSN':<32} {sum(ms.values()) / sum(tsn.values()):7.2f} {shares} {macs_share:9.2f}")
            flop_saving = 1 - measured[name][0] / measured["TSN"][0]
            saving, realized = conv_bound(tsn, macs_share, flop_saving)
            print(f"{'  conv bound':<32} convolutions alone: latency saving {saving:.2f} at FLOP saving "
                  f"{flop_saving:.2f}, realized {realized:.2f}")
            counted = counted_conv_share(models[name], measured[name][0], models["TSN"])
            saving, realized = conv_bound(tsn, counted, flop_saving, own_ms=ms["policy"])
            print(f"{'  kernel bound':<32} convolutions at the counted {counted:.2f} of TSN's multiply-adds, policy "
                  f"nets {ms['policy']:.1f} ms: latency saving {saving:.2f}, realized {realized:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, torch.get_num_threads()])
    parser.add_argument("--repeats", type=int, default=5, help="profiled forwards per case and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=Path, default=Path("results/runs"))
    args = parser.parse_args()
    keep_freed_memory()   # as realized_speed, which times the same models, runs them
    runs = rs.trained_shares(args.runs, "adafuse")
    static = statistics.mean(r["stats"]["static_share"] for r in runs) if runs else 0.0
    clips = torch.randn(1, rs.FRAMES, 3, rs.SIZE, rs.SIZE, generator=torch.Generator().manual_seed(0))
    print(f"torch {torch.__version__}, {rs.FRAMES} frames of {rs.SIZE}x{rs.SIZE}, batch 1, {args.repeats} profiled "
          f"forwards per case in each of {args.rounds} rounds; median ms per forward; static share {static:.2f} "
          f"from {len(runs)} trained AdaFuse run(s)")
    for backbone in args.backbones:
        models = cases(backbone, static)
        with torch.no_grad():
            measured = {name: rs.realized_forward(model, clips) for name, model in models.items()}
        for threads in args.threads:
            torch.set_num_threads(threads)
            print(f"\n== {backbone}, {threads} thread(s)")
            report(models, measured, clips, args.repeats, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
