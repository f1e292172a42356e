"""The benchmarks time what they claim: each sparse_kernels case equals the dense convolution restricted to
the channels it claims to compute (conv1) or read (conv2); realized_speed's folded TSN equals TSN, its rounds
time every case in a fresh order, its replayed policies repeat their draws, and its latency saving compares
each round with TSN's same round."""
import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def frame_major(result, frames: int, size: int) -> torch.Tensor:
    """A case's result as [T, channels, H, W]: the per-frame loop returns a list, grouped and GEMM calls flat."""
    if isinstance(result, list):
        result = torch.cat(result)
    return result.reshape(frames, -1, size, size)


def expected(name: str, x, weight, per_frame) -> torch.Tensor:
    """What a case must return, from one dense call: its output channels sliced, or its input channels masked."""
    frames, channels = x.shape[:2]
    kept = per_frame.shape[1]
    if name.strip().startswith("... rounded up to"):
        kept = int(name.split()[-1])
    per_frame_cases = not name.startswith(("dense", "same", " "))
    reads = torch.zeros(frames, channels, 1, 1)
    if per_frame_cases:
        reads[torch.arange(frames)[:, None], per_frame] = 1
    else:
        reads[:, :kept] = 1
    if "inputs" in name:
        return F.conv2d(x * reads, weight, padding=1)
    dense = F.conv2d(x, weight, padding=1)
    if name in ("dense", "per frame, every channel"):
        return dense
    if per_frame_cases:
        return torch.stack([dense[t, per_frame[t]] for t in range(frames)])
    return dense[:, :kept]


@pytest.mark.parametrize("channels,size,share", [(16, 8, 0.4), (24, 5, 0.6)])
def test_every_kernel_case_computes_the_channels_it_claims(channels, size, share):
    benchmark = load_benchmark("sparse_kernels")
    torch.manual_seed(0)
    x, weight, per_frame = benchmark.operands(channels, size, share)
    cases = benchmark.cases(x, weight, per_frame)
    assert len(cases) == 11
    with torch.no_grad():
        for name, (call, work) in cases.items():
            result = frame_major(call(), benchmark.FRAMES, size)
            want = expected(name, x, weight, per_frame)
            assert result.shape == want.shape, name
            torch.testing.assert_close(result, want, atol=1e-4, rtol=1e-4, msg=name)
            every_channel = name in ("dense", "per frame, every channel")
            assert work == (1.0 if every_channel else per_frame.shape[1] / channels), name


def test_folding_bn1_keeps_what_tsn_computes():
    """realized_speed's control case (TSN with each block's bn1 folded into conv1) is the same function as TSN."""
    realized_speed = load_benchmark("realized_speed")
    torch.manual_seed(0)
    model = realized_speed.build("tsn", "resnet_tiny")
    for bn in (block.bn1 for _, block in model.backbone.blocks()):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.normal_()
    clips = torch.randn(1, realized_speed.FRAMES, 3, 32, 32)
    with torch.no_grad():
        before = model(clips).logits
        folded = realized_speed.fold_bn1(model)
        assert not any(isinstance(b.bn1, torch.nn.BatchNorm2d) for _, b in folded.backbone.blocks())
        torch.testing.assert_close(folded(clips).logits, before, atol=1e-5, rtol=1e-4)


def test_latency_saving_pairs_each_round_with_tsns():
    """The saving is the median of each round's saving against TSN's same round (0.2, 0.25, 0.2 here), not
    one from the two medians taken apart (1 - 150/200 = 0.25), which round-to-round drift would skew."""
    tsn = [100.0, 200.0, 300.0]
    case = [80.0, 150.0, 240.0]
    median, lowest, highest = load_benchmark("realized_speed").paired_saving(case, tsn)
    assert (median, lowest) == pytest.approx((0.2, 0.2))
    assert highest == pytest.approx(0.25)


def test_rounds_time_every_case_once_each_in_a_shuffled_order():
    """Each case is timed once a round after a warm-up round, and every case follows different cases in
    different rounds (a rotation would keep each one's predecessor)."""
    calls = []

    class Recording(torch.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, clips):
            calls.append(self.name)

    names = [f"case{i}" for i in range(6)]
    repeats = 7
    times = load_benchmark("realized_speed").timed_rounds(
        {name: Recording(name) for name in names}, torch.zeros(1), torch.device("cpu"), repeats)
    assert {run: len(t) for run, t in times.items()} == {(name, "masked"): repeats for name in names}
    rounds = [calls[i:i + len(names)] for i in range(0, len(calls), len(names))]
    assert len(rounds) == repeats + 1 and all(sorted(r) == names for r in rounds)
    predecessors = {name: {r[r.index(name) - 1] for r in rounds[1:] if r.index(name)} for name in names}
    assert all(len(p) > 1 for p in predecessors.values())


def test_replayed_policies_draw_the_same_decisions_every_forward(monkeypatch):
    """Each round times the decisions whose FLOPs are reported: a replayed AdaFuse runs its own decision
    (its cost is timed) in every block and forward, repeats its draws from forward to forward, and a
    static share of 1 holds every channel's action over the frames."""
    realized_speed = load_benchmark("realized_speed")
    decided = []
    own_decision = realized_speed.AdaFuseHook.decide
    monkeypatch.setattr(realized_speed.AdaFuseHook, "decide",
                        lambda hook, out, branch: decided.append(hook) or own_decision(hook, out, branch))
    clips = torch.randn(1, realized_speed.FRAMES, 3, 32, 32)
    for static in (0.5, 1.0):
        model = realized_speed.adafuse("resnet_tiny", mix=realized_speed.HEADLINE, static=static)
        decided.clear()
        with torch.no_grad():
            first = model(clips).flops
            actions = [hook.actions.clone() for hook in model.hooks()]
            assert torch.equal(model(clips).flops, first)
        assert decided == model.hooks() * 2
        assert all(torch.equal(hook.actions, a) for hook, a in zip(model.hooks(), actions))
        held = [(a.argmax(-1) == a.argmax(-1)[:, :1]).all(1).float().mean().item() for a in actions]
        assert min(held) == 1.0 if static == 1.0 else max(held) < 1.0


def test_breakdown_charges_each_kind_of_work_to_its_category():
    """realized_breakdown puts the policy nets and the sparse path's gathers and fuse in their own
    categories: TSN has neither, AdaFuse's realized path both, and each has its convolutions."""
    breakdown = load_benchmark("realized_breakdown")
    models = breakdown.cases("resnet_tiny", 0.5)
    clips = torch.randn(1, breakdown.rs.FRAMES, 3, 32, 32)
    figures = {name: breakdown.breakdown(model, clips, 1) for name, model in models.items()}
    assert len(figures) == 3
    for name, ms in figures.items():
        assert ms["convolution"] > 0 and ms["batch norm"] > 0, name
        charged = (ms["policy"], ms["sparse extra"])
        assert charged == (0, 0) if name == "TSN" else min(charged) > 0, name


def test_conv_bound_is_tsn_conv_share_times_macs_saved():
    """The bound takes TSN's share of time in convolutions (here half) times the multiply-adds saved."""
    breakdown = load_benchmark("realized_breakdown")
    tsn_ms = dict.fromkeys(breakdown.CATEGORIES, 10.0) | {"convolution": 50.0}
    saving, realized = breakdown.conv_bound(tsn_ms, conv_macs_share=0.6, flop_saving=0.4)
    assert saving == pytest.approx(0.2) and realized == pytest.approx(0.5)


def test_kernel_bound_takes_the_counted_multiply_adds_and_charges_the_policy_nets():
    """The kernel bound's convolution share is what the FLOP count gives: all of TSN's for a model whose
    decisions save nothing, and below it by exactly the FLOPs saved; the policy nets' time comes off."""
    breakdown = load_benchmark("realized_breakdown")
    tsn = breakdown.rs.build("tsn", "resnet_tiny")
    adafuse = breakdown.rs.adafuse("resnet_tiny", mix=breakdown.rs.HEADLINE, static=1.0)
    tsn_conv = sum(tsn.costs[n] for n, m in tsn.named_modules() if isinstance(m, torch.nn.Conv2d))
    assert breakdown.counted_conv_share(adafuse, adafuse.dense_flops / 1e9, tsn) == pytest.approx(1.0)
    saved = 0.25 * tsn_conv
    share = breakdown.counted_conv_share(adafuse, (adafuse.dense_flops - saved) / 1e9, tsn)
    assert share == pytest.approx(0.75)
    tsn_ms = dict.fromkeys(breakdown.CATEGORIES, 10.0) | {"convolution": 50.0}
    saving, realized = breakdown.conv_bound(tsn_ms, conv_macs_share=0.6, flop_saving=0.4, own_ms=5.0)
    assert saving == pytest.approx(0.15) and realized == pytest.approx(0.375)


def test_breakdown_medians_are_taken_over_rounds_in_fresh_orders(monkeypatch):
    """Each case is profiled once per round, in a fresh order, and each category reports its median."""
    breakdown = load_benchmark("realized_breakdown")
    calls = []

    def profiled(model, clips, repeats):
        calls.append(model)
        return dict.fromkeys(breakdown.CATEGORIES, float(len(calls)))

    monkeypatch.setattr(breakdown, "breakdown", profiled)
    names = [f"case{i}" for i in range(5)]
    figures = breakdown.median_breakdowns({name: name for name in names}, None, 1, rounds=7)
    rounds = [calls[i:i + len(names)] for i in range(0, len(calls), len(names))]
    assert len(rounds) == 7 and all(sorted(r) == names for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1
    for name in names:
        seen = sorted(i + 1 for i, call in enumerate(calls) if call == name)
        assert figures[name]["convolution"] == seen[3]
