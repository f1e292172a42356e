"""Realized efficiency at the paper's scale: how much of each dynamic method's FLOP saving is measured time.

    python benchmarks/realized_speed.py [--backbones resnet18 resnet50] [--batches 1 8] [--repeats 5]
                                        [--runs results/runs] [--threads N]

Times TSN (also with each block's bn1 folded into conv1, as the policy blocks' sparse path runs it), TSM,
AdaFuse, threshold pruning, the random policy, CGNet and early exit (ResNet checkpoints) on ResNet18 and
ResNet50 at 224 x 224, 8 frames, batch 1 and 8, on the CPU (and CUDA when present), each dynamic model
through its masked path (every channel computed, then masked) and its realized path
(`vidbench.sparse.set_sparse`). Weights are random: what is timed is the work, and the policy
methods' decisions are replayed, so a synthetic run's policy is timed on a real-size network:

- AdaFuse (its policy nets and their argmax run and are timed; their decisions are replaced): actions
  drawn per video, channel and frame from a [skip, reuse, keep] mix; a `static` share of the channels
  draws one action for the whole video (trained AdaFuse policies hold most channels' action fixed over
  the frames: the share is read from the trained runs' metrics.json under --runs, stats.static_share; 0
  without runs).
  Each mix is timed with that static share and fully per frame (static 0), the headline mix also with
  every channel holding one action (static 1.00: the most the sparse path can realize). With trained
  runs, also replayed at their per-block skip/reuse/keep and static shares (each stage of the real
  network takes the shares of the same stage of the trained one);
- random: the random method (i.i.d. per channel and frame) at the same mixes; threshold: its own
  top-k decisions at keep ratios 0.5 and 0.7; CGNet: gates at their initial threshold (about half the
  positions open) and all closed; early exit: a video forced to stop at each checkpoint and, with
  trained early-exit runs under --runs, the latency at each threshold from their exit shares.

Every case is timed in each round with the others, in an order shuffled afresh each round (drift hits
all alike, and no case always follows the same one), after a warm-up round; times are medians.
`--clock cpu` times with this process's CPU time instead of the wall clock: on a machine shared with
other jobs, with --threads 1, it leaves out the time the process waits for a core (not the slowdown from
neighbours sharing caches); a quiet machine needs the default.
FLOP saving = 1 - GFLOPs / TSN's, conv run = the multiply-adds the realized path's convolutions execute /
TSN's (what the sparse path computes beyond the FLOPs shows here), latency saving = the median over rounds
of 1 - realized latency / TSN's in the same round (a ratio measured side by side, so drift between rounds
cancels), `rounds` its lowest and highest round, realized = latency saving / FLOP saving (nan under a FLOP
saving of 0.01, as in results/tables/realized.md: a case costing more than TSN has none to realize). The
last lines, one per backbone, give AdaFuse at the headline mix (HEADLINE, >= 40% FLOP saving on both
backbones) at batch 1 on the CPU:

    AdaFuse-resnet50: FLOP saving 0.xx, latency saving 0.xx (rounds 0.xx to 0.xx), realized 0.xx (0.xx to 0.xx)
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.realized import realized_share  # noqa: E402
from vidbench.backbones import Identity  # noqa: E402
from vidbench.engine import keep_freed_memory  # noqa: E402
from vidbench.flops import attach, attach_costs  # noqa: E402
from vidbench.plugins import get_method  # noqa: E402
from vidbench.policy import ACTIONS, one_hot  # noqa: E402
from vidbench.sparse import fold_batch_norm, set_sparse  # noqa: E402

AdaFuseHook = get_method("adafuse").module().AdaFuseHook

FRAMES, SIZE, CLASSES = 8, 224, 174
MIXES = [(0.3, 0.3, 0.4), (0.5, 0.25, 0.25), (0.6, 0.2, 0.2), (0.75, 0.1, 0.15)]   # [skip, reuse, keep]
HEADLINE = (0.6, 0.2, 0.2)


class ReplayedAdaFuse(AdaFuseHook):
    """AdaFuse's own decision runs (policy net, argmax: its cost stays) and is replaced by a replay: per
    video, each channel holds one action for every frame with probability `static`, else draws one per
    frame. The draws are made once per batch size (from `seed`) and every forward replays them, so each
    round times the decisions whose FLOPs are reported, and no drawing."""

    def replay(self, shares, static: float, seed: int):
        self.shares, self.static, self.seed = torch.tensor(shares, dtype=torch.float), static, seed
        self.draws: dict[tuple[int, torch.device], torch.Tensor] = {}

    def decide(self, out, branch):
        super().decide(out, branch)
        key = (branch.shape[0] // self.num_segments, branch.device)
        if key not in self.draws:
            self.draws[key] = one_hot(self.draw(key[0]), branch.dtype).to(branch.device)
        return self.draws[key]

    def draw(self, videos: int) -> torch.Tensor:
        """Action indices [videos * T, C] of the replay."""
        generator, channels = torch.Generator().manual_seed(self.seed), self.channels
        draw = lambda n: torch.multinomial(self.shares, n, True, generator=generator)  # noqa: E731
        per_frame = draw(videos * self.num_segments * channels).view(videos, self.num_segments, channels)
        fixed = draw(videos * channels).view(videos, 1, channels)
        held = torch.rand(videos, 1, channels, generator=generator) < self.static
        return torch.where(held, fixed, per_frame).flatten(0, 1)


COSTS: dict[tuple[str, str], dict] = {}   # fvcore's table per method and backbone (options here change no shape)


def build(method: str, backbone: str, **cfg):
    spec = get_method(method)
    model = spec.build({**spec.defaults, **cfg}, backbone=backbone, num_classes=CLASSES, num_segments=FRAMES)
    if (method, backbone) not in COSTS:
        COSTS[method, backbone] = attach(model, (FRAMES, 3, SIZE, SIZE)).costs
    # channels-last, as the engine builds every model it trains, evaluates and measures
    return attach_costs(model, COSTS[method, backbone]).eval().to(memory_format=torch.channels_last)


def fold_bn1(model):
    """`model` with every block's bn1 folded into conv1, as the policy blocks' sparse path folds it (TSN so
    folded shows what the fold alone saves)."""
    for _, block in model.backbone.blocks():
        weight, bias = fold_batch_norm(block.conv1, block.bn1)
        block.conv1.weight.data = weight.detach().contiguous(memory_format=torch.channels_last)
        block.conv1.bias = torch.nn.Parameter(bias.detach())
        block.bn1 = Identity()
    return model


def adafuse(backbone: str, per_block: list[tuple[list[float], float]] | None = None, mix=None, static=0.0):
    """AdaFuse with replayed decisions: one mix and static share for every block, or one per block."""
    model = build("adafuse", backbone)
    for i, hook in enumerate(model.hooks()):
        hook.__class__ = ReplayedAdaFuse
        shares, held = per_block[i] if per_block else (mix, static)
        hook.replay(shares, held, seed=i)
    return model


def trained_shares(runs: Path | None, method: str) -> list[dict]:
    """metrics.json of the trained default runs of `method` under `runs`."""
    if runs is None or not runs.is_dir():
        return []
    return [json.loads(f.read_text()) for f in sorted(runs.glob(f"*/{method}/default/*/seed*/metrics.json"))]


def stage_shares(metrics: list[dict], model) -> list[tuple[list[float], float]]:
    """Per block of `model`: the mean [skip, reuse, keep] and static share of the trained runs' blocks of
    the same stage."""
    by_stage: dict[str, list[tuple[list[float], float]]] = {}
    for run in metrics:
        for block in run["stats"]["per_block"]:
            by_stage.setdefault(block["block"].split(".")[0], []).append(
                ([block[a] for a in ACTIONS], block["static"]))
    out = []
    for hook in model.hooks():
        entries = by_stage[hook.block_name.split(".")[0]]
        shares = [statistics.mean(e[0][k] for e in entries) for k in range(3)]
        out.append((shares, statistics.mean(e[1] for e in entries)))
    return out


def cases(backbone: str, static: float, adafuse_runs: list[dict]) -> dict[str, object]:
    """Name -> model; dynamic models are timed masked and realized."""
    label = lambda mix: "/".join(f"{v:g}" for v in mix)  # noqa: E731
    models = {"TSN": build("tsn", backbone), "TSN bn1 folded": fold_bn1(build("tsn", backbone)),
              "TSM": build("tsm", backbone)}
    for mix in MIXES:
        if static > 0:
            models[f"AdaFuse {label(mix)} static {static:.2f}"] = adafuse(backbone, mix=mix, static=static)
        models[f"AdaFuse {label(mix)} per frame"] = adafuse(backbone, mix=mix)
    # the ceiling of the sparse path: every channel holds one action over the video
    models[f"AdaFuse {label(HEADLINE)} static 1.00"] = adafuse(backbone, mix=HEADLINE, static=1.0)
    if adafuse_runs:
        model = build("adafuse", backbone)
        models["AdaFuse trained shares"] = adafuse(backbone, per_block=stage_shares(adafuse_runs, model))
    models[f"Random {label(HEADLINE)}"] = build("random", backbone, distribution=list(HEADLINE))
    for keep in (0.5, 0.7):
        models[f"Threshold keep {keep}"] = build("threshold", backbone, keep_ratio=keep)
    models["CGNet theta 0"] = build("cgnet", backbone)
    models["CGNet closed"] = build("cgnet", backbone, force="closed")
    exits = build("earlyexit", backbone)
    for e, name in enumerate(exits.checkpoint_names()):
        forced = build("earlyexit", backbone, force_exit=e)
        forced.load_state_dict(exits.state_dict())
        models[f"Early exit at {name}"] = forced
    return models


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def timed_rounds(models: dict, clips: torch.Tensor, device, repeats: int, clock=time.perf_counter) -> dict:
    """Seconds per forward of every (case, path), one warm-up round, then `repeats` rounds, each in a seeded
    shuffled order."""
    runs = [(name, path) for name, model in models.items()
            for path in (("masked", "realized") if set_sparse(model, False) else ("masked",))]
    times = {run: [] for run in runs}
    with torch.no_grad():
        for i in range(repeats + 1):
            for name, path in random.Random(i).sample(runs, len(runs)):
                model = models[name]
                set_sparse(model, path == "realized")
                sync(device)
                start = clock()
                model(clips)
                sync(device)
                if i:
                    times[name, path].append(clock() - start)
    return times


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def realized_forward(model, clips) -> tuple[float, float]:
    """(GFLOPs, GMACs its convolutions execute) per video of one realized forward of `model`: the second is
    what its sparse path computes, padding and channels computed for every frame included (the FLOPs are
    the masked path's, tests/test_sparse.py)."""
    counted = []
    real = F.conv2d

    def counting(x, weight, *args):
        y = real(x, weight, *args)
        counted.append(y.numel() * weight[0].numel())
        return y

    set_sparse(model, True)
    F.conv2d = counting
    try:
        flops = model(clips).flops.float().mean().item()
    finally:
        F.conv2d = real
        set_sparse(model, False)
    return flops / 1e9, sum(counted) / len(clips) / 1e9


def paired_saving(case_rounds: list[float], tsn_rounds: list[float]) -> tuple[float, float, float]:
    """(median, lowest, highest) over rounds of 1 - the case's time / TSN's time in the same round."""
    per_round = sorted(1 - t / tsn for t, tsn in zip(case_rounds, tsn_rounds, strict=True))
    return statistics.median(per_round), per_round[0], per_round[-1]


def report(models, clips, times) -> dict[str, dict]:
    """Print one line per case; return name -> figures."""
    with torch.no_grad():
        measured = {name: realized_forward(model, clips) for name, model in models.items()}
    gflops = {name: m[0] for name, m in measured.items()}
    run = {name: m[1] for name, m in measured.items()}
    tsn_rounds = times["TSN", "masked"]
    print(f"{'case':<36} {'GFLOPs':>7} {'FLOP sav':>8} {'conv run':>8} {'masked ms':>10} {'realized ms':>11} "
          f"{'lat sav':>8} {'rounds':>12} {'realized':>8}")
    figures = {}
    for name in models:
        realized_rounds = times.get((name, "realized"), times[name, "masked"])
        masked, realized = (1000 * statistics.median(t) for t in (times[name, "masked"], realized_rounds))
        flop_saving = 1 - gflops[name] / gflops["TSN"]
        latency_saving, lowest, highest = paired_saving(realized_rounds, tsn_rounds)
        share = realized_share(1 - flop_saving, 1 - latency_saving)
        figures[name] = dict(gflops=gflops[name], flop_saving=flop_saving, latency_saving=latency_saving,
                             latency_saving_rounds=(lowest, highest), realized=share, masked_ms=masked,
                             realized_ms=realized, conv_gmacs_run=run[name])
        print(f"{name:<36} {gflops[name]:7.2f} {flop_saving:8.2f} {run[name] / run['TSN']:8.2f} {masked:10.1f} "
              f"{realized:11.1f} {latency_saving:8.2f} {lowest:5.2f} to {highest:4.2f} {share:8.2f}")
    return figures


def exit_thresholds(figures: dict, exit_runs: list[dict], checkpoints: list[str]) -> None:
    """Latency at each threshold of the trained early-exit runs: per-checkpoint latencies x exit shares."""
    per_exit = [figures[f"Early exit at {name}"]["realized_ms"] for name in checkpoints]
    print(f"early exit, per checkpoint ({', '.join(checkpoints)}): " + ", ".join(f"{v:.1f} ms" for v in per_exit))
    if not exit_runs:
        return
    points = {}
    for run in exit_runs:
        for point in run.get("eval_points", []):
            if len(point["exit_share"]) == len(per_exit):
                points.setdefault(point["threshold"], []).append(sum(s * v for s, v in zip(point["exit_share"], per_exit)))
    latencies = [statistics.mean(points[t]) for t in sorted(points)]
    print("early exit at the trained runs' exit shares: " +
          ", ".join(f"thr {t:g} {v:.1f} ms" for t, v in zip(sorted(points), latencies)))
    falls = all(b >= a - 1e-9 for a, b in zip(latencies, latencies[1:]))
    print(f"early exit latency falls with a lower threshold: {'yes' if falls else 'no'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=Path, default=Path("results/runs"),
                        help="trained runs whose AdaFuse shares and early-exit shares are replayed")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    adafuse_runs, exit_runs = trained_shares(args.runs, "adafuse"), trained_shares(args.runs, "earlyexit")
    static = statistics.mean(r["stats"]["static_share"] for r in adafuse_runs) if adafuse_runs else 0.0
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads, "
          f"{args.clock} clock, "
          f"{FRAMES} frames of {SIZE}x{SIZE}, {args.repeats} timed rounds; static share "
          f"{static:.2f} from {len(adafuse_runs)} trained AdaFuse run(s) under {args.runs}")
    headline = {}
    for device in devices:
        for backbone in args.backbones:
            models = {name: model.to(device) for name, model in cases(backbone, static, adafuse_runs).items()}
            for batch in args.batches:
                clips = torch.randn(batch, FRAMES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)).to(device)
                print(f"\n== {backbone}, batch {batch}, {device.type}")
                clock = CLOCKS[args.clock] if device.type == "cpu" else time.perf_counter   # GPU time is wall time
                figures = report(models, clips, timed_rounds(models, clips, device, args.repeats, clock))
                exit_thresholds(figures, exit_runs, models["Early exit at layer4"].checkpoint_names())
                if device.type == "cpu" and batch == 1:
                    key = f"AdaFuse {'/'.join(f'{v:g}' for v in HEADLINE)} " + (
                        f"static {static:.2f}" if static > 0 else "per frame")
                    headline[backbone] = figures[key]
    print()
    for backbone, f in headline.items():
        lowest, highest = f["latency_saving_rounds"]
        print(f"AdaFuse-{backbone}: FLOP saving {f['flop_saving']:.2f}, latency saving {f['latency_saving']:.2f} "
              f"(rounds {lowest:.2f} to {highest:.2f}), realized {f['realized']:.2f} "
              f"({lowest / f['flop_saving']:.2f} to {highest / f['flop_saving']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
