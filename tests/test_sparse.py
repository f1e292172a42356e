"""Sparse (realized) execution: the same logits and FLOPs as the masked path, with the left-out work not run.

Tolerance: logits of the two paths agree within rtol 1e-4, atol 1e-5 (the sparse path sums the same
products in another order and folds BN into conv1). Every test would fail with the sparse path switched
off: it checks the multiply-adds the convolutions execute (counted by wrapping F.conv2d) or the frames
the later stages see, not only the outputs.
"""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from vidbench import policy, sparse
from vidbench.flops import attach
from vidbench.plugins import get_method
from vidbench.policy import KEEP, REUSE

real_channels_read = policy.channels_read

CLASSES = 5


def build(method, backbone="resnet_tiny", frames=4, size=32, **cfg):
    # seeded: threshold pruning's top-k can flip at a near-tie when float rounding of earlier sparse
    # blocks differs, so an unseeded build failed about one run in eight
    torch.manual_seed(0)
    spec = get_method(method)
    model = spec.build({**spec.defaults, **cfg}, backbone=backbone, num_classes=CLASSES, num_segments=frames)
    return attach(model, (frames, 3, size, size)).eval()


def clips(videos, frames=4, size=32, seed=0):
    return torch.randn(videos, frames, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def conv_macs(monkeypatch):
    """Multiply-adds of every convolution run while the fixture is active: a list, reset by the test."""
    counted = []
    real = F.conv2d

    def counting(x, weight, *args, **kwargs):
        y = real(x, weight, *args, **kwargs)
        counted.append(y.numel() * weight[0].numel())
        return y

    monkeypatch.setattr(F, "conv2d", counting)
    return counted


def both_paths(model, x, counted):
    """(masked output, its conv MACs, sparse output, its conv MACs); eval() before each pass so that a
    random policy draws the same actions."""
    results = []
    for on in (False, True):
        sparse.set_sparse(model, on)
        model.eval()
        counted.clear()
        with torch.no_grad():
            results += [model(x), sum(counted)]
    sparse.set_sparse(model, False)
    return results


def same_logits(a, b):
    torch.testing.assert_close(b.logits, a.logits, rtol=1e-4, atol=1e-5)


def channels_run(model) -> float:
    """MACs the sparse path runs in conv1 and conv2 of the hooked blocks: per video, both over the channels
    read at some frame (kept, or reused after the first frame), their count rounded up to a multiple of
    sparse.ALIGN."""
    work = 0.0
    for hook in model.hooks():
        index = hook.actions.argmax(-1)                                         # [N, T, C]
        read = index == KEEP
        read[:, 1:] |= index[:, 1:] == REUSE
        channels = index.shape[-1]
        for n in read.any(1).sum(1).tolist():
            used = min(math.ceil(n / sparse.ALIGN) * sparse.ALIGN, channels)
            conv1 = channels if hook.needs_output else used
            work += conv1 / channels * model.cost(hook.conv1_name) + used / channels * model.cost(hook.conv2_name)
    return work


POLICIES = [("adafuse", {"force": "skip"}), ("adafuse", {"force": "reuse"}), ("adafuse", {"force": "keep"}),
            ("random", {"distribution": [0.3, 0.3, 0.4]}), ("random", {"distribution": [0.6, 0.2, 0.2]})]


@pytest.mark.parametrize("backbone, size, videos", [("resnet_tiny", 32, 3), ("resnet18", 224, 1),
                                                    ("resnet50", 64, 1)])   # bottleneck: conv1 1x1, conv2 strided
@pytest.mark.parametrize("method, cfg", POLICIES)
def test_policy_sparse_path_matches_masked_and_runs_only_the_channels_read(backbone, size, videos, method, cfg,
                                                                           conv_macs, monkeypatch):
    sparse_videos = []
    monkeypatch.setattr(policy, "channels_read", lambda index: sparse_videos.append(1) or real_channels_read(index))
    model = build(method, backbone, size=size, **cfg)
    x = clips(videos, size=size)
    masked, masked_macs, realized, realized_macs = both_paths(model, x, conv_macs)
    assert len(sparse_videos) == len(model.hooks()) * videos  # the sparse path ran (forced keep costs what dense does)
    same_logits(masked, realized)
    assert torch.equal(realized.flops, masked.flops)
    hooked = sum(model.cost(h.conv1_name) + model.cost(h.conv2_name) for h in model.hooks()) * videos
    assert realized_macs == pytest.approx(masked_macs - hooked + channels_run(model), rel=1e-9)


def test_channels_read_are_those_kept_or_reused_after_the_first_frame():
    index = torch.tensor([[KEEP, 0, 0, REUSE],
                          [0, REUSE, 0, REUSE],
                          [0, 0, 0, REUSE]])               # [T, C]: skip is 0
    # channel 1 is read at frame 1 only (a reuse); channel 3 from frame 1 on; channel 2 never; a reuse at
    # frame 0 reads zeros
    assert real_channels_read(index).tolist() == [0, 1, 3]
    assert real_channels_read(torch.full((3, 4), REUSE))[:1].tolist() == [0]
    assert real_channels_read(torch.tensor([[REUSE, 0], [0, 0]])).tolist() == []


def test_aligned_pads_with_unused_channels_to_a_multiple_of_align():
    padded = sparse.aligned(torch.tensor([5, 2]), 20)
    assert padded[:2].tolist() == [5, 2] and len(padded) == sparse.ALIGN and len(set(padded.tolist())) == sparse.ALIGN
    assert sparse.aligned(torch.arange(sparse.ALIGN), 20).tolist() == list(range(sparse.ALIGN))
    assert sorted(sparse.aligned(torch.tensor([1]), 3).tolist()) == [0, 1, 2]


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])  # NHWC: as the engine runs
@pytest.mark.parametrize("method, cfg", [("random", {"distribution": [0.9, 0.05, 0.05]}),
                                         ("threshold", {"keep_ratio": 0.5})])
def test_policy_sparse_path_on_eight_frames_matches_masked(method, cfg, memory_format, conv_macs):
    model = build(method, "resnet18", size=64, frames=8, **cfg).to(memory_format=memory_format)
    masked, masked_macs, realized, realized_macs = both_paths(model, clips(2, frames=8, size=64), conv_macs)
    same_logits(masked, realized)
    assert torch.equal(realized.flops, masked.flops)
    assert realized_macs < masked_macs


def test_split_work_batches_channels_needed_in_most_frames():
    mask = torch.zeros(8, 4, dtype=torch.bool)
    mask[:, 0] = True                          # every frame
    mask[:7, 1] = True                         # seven frames
    mask[2, 2] = True                          # one frame
    batched, per_frame = sparse.split_work(mask, pixels=49)       # reading weights = one frame's work
    assert batched.tolist() == [0, 1]
    assert [c.tolist() for c in per_frame] == [[], [], [2], [], [], [], [], []]
    batched, per_frame = sparse.split_work(mask, pixels=56 * 56)
    assert batched.tolist() == [0] and per_frame[0].tolist() == [1]


def test_sparse_weights_are_refolded_when_weights_change():
    model = build("random", distribution=[0.0, 0.0, 1.0])
    hook, block = model.hooks()[0], model.backbone.layer1[0]
    every = torch.arange(block.width)

    def gathered():
        weights = hook.weights.current(block.conv1, block.bn1, block.conv2)
        return weights.conv1_rows(every)[0].clone(), weights.conv2_columns(every).clone()

    conv1_weight, conv2_weight = gathered()
    torch.testing.assert_close(conv2_weight, block.conv2.weight)
    with torch.no_grad():
        block.conv1.weight.mul_(2)
        block.conv2.weight.mul_(3)
    conv1_now, conv2_now = gathered()
    assert torch.allclose(conv1_now, 2 * conv1_weight) and torch.allclose(conv2_now, 3 * conv2_weight)


def test_sparse_weights_gather_the_channels_asked_for():
    model = build("random", distribution=[0.0, 0.0, 1.0])
    hook, block = model.hooks()[0], model.backbone.layer1[0]
    weights = hook.weights.current(block.conv1, block.bn1, block.conv2)
    channels = torch.tensor([3, 0, 5])
    folded, bias = sparse.fold_batch_norm(block.conv1, block.bn1)
    rows, row_bias = weights.conv1_rows(channels)
    torch.testing.assert_close(rows, folded[channels])
    torch.testing.assert_close(row_bias, bias[channels])
    torch.testing.assert_close(weights.conv2_columns(channels), block.conv2.weight[:, channels])


def test_cgnet_sparse_path_skips_the_rest_of_closed_channels(conv_macs):
    model = build("cgnet", force="closed")
    masked, masked_macs, realized, realized_macs = both_paths(model, clips(2), conv_macs)
    same_logits(masked, realized)
    assert torch.equal(realized.flops, masked.flops)
    rest = sum(model.cost(f"{name}.rest") for name, _ in model.gates) * 2
    assert realized_macs == pytest.approx(masked_macs - rest)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_cgnet_sparse_path_matches_masked_with_learned_gates(memory_format, conv_macs):
    model = build("cgnet").to(memory_format=memory_format)
    for _, gate in model.gates:
        gate.theta.data.normal_(1.0, 1.0)      # some channels closed over a whole frame, some partly open
    masked, masked_macs, realized, realized_macs = both_paths(model, clips(2), conv_macs)
    same_logits(masked, realized)
    assert torch.equal(realized.flops, masked.flops)
    assert realized_macs < masked_macs


def frames_seen(module):
    """Frames (batch rows) each call of `module` receives (a tensor, or MSDNet's list of scales)."""
    seen = []

    def rows(x):
        return x.shape[0] if torch.is_tensor(x) else next(t.shape[0] for t in x if t is not None)

    module.register_forward_pre_hook(lambda m, args: seen.append(rows(args[0])))
    return seen


def first_exit_threshold(model, x):
    """A threshold between the first checkpoint's confidences, so some videos stop there and others not."""
    with torch.no_grad():
        confidence = model.exit_logits(x)[:, 0].softmax(-1).amax(-1).sort().values
    return ((confidence[1] + confidence[2]) / 2).item(), int((confidence > (confidence[1] + confidence[2]) / 2).sum())


@pytest.mark.parametrize("method, later", [("earlyexit", lambda m: m.backbone.layer3),
                                           ("earlyexit_msdnet", lambda m: m.net.blocks[1])])
def test_early_exit_stops_each_video_at_its_first_firing_checkpoint(method, later):
    model = build(method)
    x = clips(6)
    model.threshold, stopping = first_exit_threshold(model, x)
    seen = frames_seen(later(model))
    with torch.no_grad():
        masked = model(x)
        sparse.set_sparse(model, True)
        realized = model(x)
    same_logits(masked, realized)
    assert torch.equal(realized.stats["exit_at"], masked.stats["exit_at"])
    assert torch.equal(realized.flops, masked.flops)
    assert 0 < stopping < 6
    assert seen == [6 * 4, (6 - stopping) * 4]   # masked: every video; realized: those that went on


def test_frame_early_exit_streams_only_the_frames_it_needs():
    model = build("earlyexit_frames")
    x = clips(6)
    model.threshold, stopping = first_exit_threshold(model, x)
    seen = frames_seen(model.backbone.layer1)
    with torch.no_grad():
        masked = model(x)
        sparse.set_sparse(model, True)
        realized = model(x)
    same_logits(masked, realized)
    assert torch.equal(realized.flops, masked.flops)
    # masked: all 4 frames of every video at once; realized: frame by frame, stopped videos left out
    assert seen[0] == 24 and seen[1:3] == [6, 6 - stopping]
    assert sum(seen[1:]) == (realized.stats["exit_at"].argmax(1) + 1).sum().item()
    assert all(shift.last is None and shift.chunk is None for shift in model.backbone.modules()
               if hasattr(shift, "last"))


def test_early_exit_at_threshold_zero_runs_only_the_first_checkpoint():
    model = build("earlyexit", threshold=0.0)
    seen = frames_seen(model.backbone.layer3)
    sparse.set_sparse(model, True)
    with torch.no_grad():
        out = model(clips(3))
    assert seen == [] and torch.all(out.stats["exit_at"].argmax(1) == 0)


def test_static_methods_have_no_sparse_path():
    assert sparse.set_sparse(build("tsn"), True) is False
    assert sparse.set_sparse(build("random", distribution=[0.3, 0.3, 0.4]), True) is True


def test_sparse_evaluation_switches_every_module_both_ways():
    model = build("random", distribution=[0.3, 0.3, 0.4])
    modules = [m for m in model.modules() if isinstance(m, sparse.Realizable)]
    assert sparse.set_sparse_evaluation(model, True) is True and all(m.sparse is True for m in modules)
    assert sparse.set_sparse_evaluation(model, False) is False and all(m.sparse is False for m in modules)
    exits = build("earlyexit")                 # its threshold sweep needs every checkpoint: evaluated masked
    assert sparse.set_sparse_evaluation(exits, True) is False


def test_conv_outputs_computes_the_masked_channels_in_both_kinds_of_call():
    torch.manual_seed(0)
    like = torch.nn.Conv2d(6, 5, 3, padding=1, bias=False)
    x = torch.randn(4, 6, 20, 20)
    mask = torch.rand(4, 5) < 0.4
    mask[:, 0] = True                          # needed in every frame: the all-frames call
    batched, per_frame = sparse.split_work(mask, 20 * 20)
    assert batched.tolist() == [0] and sum(len(c) for c in per_frame) > 0   # and per-frame calls
    out = sparse.conv_outputs(x, like.weight, like, mask, torch.full((4, 5, 20, 20), 7.0))
    with torch.no_grad():
        dense = like(x)
    where = mask[:, :, None, None].expand_as(dense)
    torch.testing.assert_close(out[where], dense[where])
    assert torch.all(out[~where] == 7.0)       # what the mask leaves out keeps what out held


def test_fold_batch_norm_is_the_conv_then_the_batch_norm():
    torch.manual_seed(0)
    conv, bn = torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4, eps=1e-3).eval()
    with torch.no_grad():
        bn.running_var.copy_(torch.tensor([1e-3, 0.5, 2.0, 1e-4]))   # where eps is no rounding error
        bn.running_mean.normal_()
        bn.weight.normal_()
        bn.bias.normal_()
        x = torch.randn(2, 3, 8, 8)
        weight, bias = sparse.fold_batch_norm(conv, bn)
        torch.testing.assert_close(F.conv2d(x, weight, bias), bn(conv(x)), rtol=1e-5, atol=1e-5)


def test_measure_writes_masked_and_realized_figures(tiny_config, tmp_path):
    from analysis import aggregate
    from vidbench import config as cfg
    from vidbench import io as vio
    from vidbench import measure
    from vidbench.evaluate import evaluate
    from vidbench.train import train

    figures = {}
    for method in ("adafuse", "earlyexit"):
        spec = cfg.resolve_run(tiny_config, "synth-sthv1", method, "default", "resnet_tiny", 0)
        spec["train"]["epochs"] = 1
        run = tmp_path / method
        train(spec, run, progress=False)
        metrics = evaluate(run, progress=False)
        figures[method] = measure.measure(run), metrics
    timing, metrics = figures["adafuse"]
    assert metrics["execution"] == "sparse" and timing["sparse_path"]
    for kind in ("latency_ms", "throughput_vps"):
        for path in ("masked", "realized"):
            assert timing[kind][path]["p10"] <= timing[kind][path]["median"] <= timing[kind][path]["p90"]
    assert timing["max_logit_gap"] < 1e-4
    assert timing["setting"]["threads"] == 1 and timing["setting"]["latency_repeats"] == 2
    timing, metrics = figures["earlyexit"]
    assert metrics["execution"] == "masked"                     # the sweep needs every checkpoint
    assert [p["point"] for p in timing["eval_points"]] == [p["point"] for p in metrics["eval_points"]]
    first, last = timing["eval_points"][0], timing["eval_points"][-1]
    assert first["latency_ms"] == pytest.approx(timing["checkpoint_latency_ms"][0])
    assert last["latency_ms"] == pytest.approx(timing["checkpoint_latency_ms"][-1])
    # the run's row matches its own threshold's point (0.5), whose GFLOPs it shares
    vio.write_json(tmp_path / "earlyexit" / measure.LATENCY, timing)
    rows = {row["point"]: row for row in aggregate.collect([tmp_path / "earlyexit" / "metrics.json"])}
    assert rows["default"]["gflops"] == pytest.approx(rows["thr 0.5"]["gflops"])
    assert rows["default"]["latency_ms"] == pytest.approx(rows["thr 0.5"]["latency_ms"])


def write_run(root, method, gflops, latency, masked, points=()):
    """A fake evaluated and measured run: metrics.json and latency.json."""
    run = root / method
    run.mkdir(parents=True)
    keys = {"dataset": "synth-sthv1", "method": method, "point": "default", "backbone": "resnet_tiny", "seed": 0}
    (run / "metrics.json").write_text(json.dumps({
        "run": keys, "title": method, "top1": 50.0, "gflops": gflops,
        "eval_points": [{"point": p, "top1": 40.0, "gflops": g, "exit_share": [1.0]} for p, g, _ in points]}))
    figure = lambda ms: {"median": ms, "p10": ms * 0.9, "p90": ms * 1.2, "n": 5}  # noqa: E731
    (run / "latency.json").write_text(json.dumps({
        "latency_ms": {"masked": figure(masked), "realized": figure(latency)},
        "throughput_vps": {"masked": figure(10.0), "realized": figure(20.0)},
        "eval_points": [{"point": p, "latency_ms": ms, "latency_masked_ms": masked} for p, _, ms in points]}))
    return run / "metrics.json"


def test_summary_and_realized_table_take_the_measured_latency(tmp_path):
    from analysis import aggregate, plots, realized

    files = [write_run(tmp_path, "tsn", 2.0, 10.0, 10.0),
             write_run(tmp_path, "adafuse", 1.0, 7.0, 12.0),
             write_run(tmp_path, "earlyexit", 2.0, 9.0, 11.0, points=[("first exit", 0.5, 4.0)])]
    aggregate.write_csv(aggregate.collect(files), tmp_path / "summary.csv")
    summary = aggregate.read_summary(tmp_path / "summary.csv")
    ada = summary[summary["method"] == "adafuse"].iloc[0]
    assert (ada["latency_ms"], ada["latency_masked_ms"], ada["latency_p90_ms"], ada["throughput_vps"]) == (
        7.0, 12.0, 7.0 * 1.2, 20.0)
    point = summary[summary["point"] == "first exit"].iloc[0]
    assert (point["latency_ms"], point["latency_masked_ms"]) == (4.0, 11.0)
    table = realized.realized_table(summary).set_index(["method", "point"])
    assert table.loc[("adafuse", "default"), ["flops_ratio", "latency_ratio", "masked_latency_ratio"]].tolist() == [
        0.5, 0.7, 1.2]
    assert table.loc[("adafuse", "default"), "realized"] == pytest.approx(0.3 / 0.5)
    assert table.loc[("earlyexit", "first exit"), "realized"] == pytest.approx(0.6 / 0.75)
    assert math.isnan(table.loc[("tsn", "default"), "realized"])     # no FLOP saving to realize
    files = plots.plot_dataset(summary, "synth-sthv1", tmp_path, "latency_ms")
    assert [f.name for f in files] == [f"latency_synth-sthv1.{e}" for e in ("png", "pdf", "csv")]
    assert "first exit" in files[2].read_text()
