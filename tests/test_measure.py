"""`vidbench measure`: which passes are timed, how the figures are summarized, and what latency.json holds.

The timing helpers run against a fake clock, so every figure they return is known exactly."""
import json
import types

import pytest
import torch
from torch import nn

from vidbench import measure
from vidbench.errors import InputError
from vidbench.evaluate import evaluate
from vidbench.sparse import Realizable


class Clock:
    """A fake `time` module whose clock only moves when a fake model runs."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(measure, "time", types.SimpleNamespace(perf_counter=fake.perf_counter))
    return fake


class Recorder(Realizable, nn.Module):
    """Each forward takes `cost(call, sparse, input)` seconds on the clock and is logged."""

    def __init__(self, clock, cost):
        super().__init__()
        self.clock, self.cost, self.calls = clock, cost, []

    def forward(self, clip):
        self.calls.append((self.sparse, clip.item(), torch.is_grad_enabled()))
        self.clock.now += self.cost(len(self.calls), self.sparse, clip.item())


def test_timed_alternates_the_paths_and_keeps_only_the_passes_after_warm_up(clock):
    model = Recorder(clock, lambda call, sparse, clip: call)     # the n-th forward takes n seconds
    inputs = [torch.tensor(10.0), torch.tensor(20.0), torch.tensor(30.0)]
    times = measure.timed(model, inputs, torch.device("cpu"), repeats=3, warmup=2)
    assert [(s, c) for s, c, _ in model.calls] == [
        (False, 10), (True, 10), (True, 20), (False, 20),     # warm-up
        (False, 30), (True, 30), (True, 10), (False, 10), (False, 20), (True, 20)]
    assert times == {"masked": [5, 8, 9], "realized": [6, 7, 10]}
    assert not any(grad for _, _, grad in model.calls)
    assert model.sparse is False                              # left on the masked path


def test_timed_one_path_without_warm_up(clock):
    model = Recorder(clock, lambda call, sparse, clip: 0.5 * call)
    times = measure.timed(model, [torch.tensor(1.0)], torch.device("cpu"), repeats=2, warmup=0, paths=("realized",))
    assert times == {"realized": [0.5, 1.0]} and [s for s, _, _ in model.calls] == [True, True]


def test_spread_is_the_median_and_the_inclusive_10th_and_90th_percentiles():
    assert measure.spread([0.5, 0.1, 0.4, 0.2, 0.3, 1.0], scale=1000) == pytest.approx(
        {"median": 350.0, "p10": 150.0, "p90": 750.0, "n": 6})
    assert measure.spread([3.0, 1.0]) == pytest.approx({"median": 2.0, "p10": 1.2, "p90": 2.8, "n": 2})
    assert measure.spread([0.25], scale=4) == {"median": 1.0, "p10": 1.0, "p90": 1.0, "n": 1}


class Exits(Realizable, nn.Module):
    """A fake early-exit model: a video stopping at checkpoint e takes 10 (e + 1) ms realized."""

    def __init__(self, clock, fail_at=None):
        super().__init__()
        self.clock, self.fail_at, self.force_exit = clock, fail_at, "threshold"

    def checkpoint_names(self):
        return ["layer2", "layer3", "layer4"]

    def forward(self, clip):
        assert self.sparse
        if self.force_exit == self.fail_at:
            raise RuntimeError("out of memory")
        self.clock.now += 0.01 * (self.force_exit + 1) * clip.item()


def test_exit_latencies_force_each_checkpoint_and_restore_the_threshold(clock):
    model = Exits(clock)
    videos = [torch.tensor(1.0), torch.tensor(2.0), torch.tensor(1.0)]
    assert measure.exit_latencies(model, videos, torch.device("cpu"), repeats=3, warmup=1) == pytest.approx(
        [10.0, 20.0, 30.0])                          # median over 2, 1, 1 x the checkpoint's time, in ms
    assert model.force_exit == "threshold"
    failing = Exits(clock, fail_at=1)
    with pytest.raises(RuntimeError):
        measure.exit_latencies(failing, videos, torch.device("cpu"), repeats=1, warmup=0)
    assert failing.force_exit == "threshold"


def test_weighted_latency_needs_one_share_per_checkpoint(tmp_path):
    assert measure.weighted([10.0, 20.0, 40.0], [0.5, 0.25, 0.25], tmp_path) == 20.0
    with pytest.raises(InputError, match="2 exit shares for 3 checkpoints"):
        measure.weighted([10.0, 20.0, 40.0], [0.5, 0.5], tmp_path / "metrics.json")


class Gap(Realizable, nn.Module):
    """Random logits (the same after each reseed) that the realized path shifts by 0.25 in one entry."""

    def forward(self, clip):
        logits = torch.rand(len(clip), 3)
        self.modes = getattr(self, "modes", []) + [self.training]
        if self.sparse:
            logits[-1, 1] += 0.25
        return types.SimpleNamespace(logits=logits.half())


def test_logit_gap_compares_the_paths_on_the_same_draws_in_eval_mode():
    model = Gap().train()
    assert measure.logit_gap(model, torch.zeros(2, 1)) == pytest.approx(0.25, abs=1e-3)
    assert model.modes == [False, False] and model.sparse is False


@pytest.fixture
def measured(untrained_run):
    """make(method, **overrides) -> (metrics, latency figures) of an untrained, evaluated run, timed with 1 thread
    (the run's) or `threads`."""
    def make(method, threads=None, **overrides):
        run_dir = untrained_run(method, **overrides)
        spec = json.loads((run_dir / "spec.json").read_text())
        spec["eval"].update(latency_videos=3, latency_warmup=2, throughput_batches=2)
        (run_dir / "spec.json").write_text(json.dumps(spec))
        metrics = evaluate(run_dir, progress=False)
        return metrics, measure.measure(run_dir, threads)
    return make


def before_each_forward(monkeypatch, hook):
    """Every model `vidbench measure` builds calls hook(model, clip) before each forward."""
    from vidbench import engine

    def build_model(spec, costs):
        model = engine.build_model(spec, costs)
        model.register_forward_pre_hook(lambda module, args: hook(module, args[0]))
        return model

    monkeypatch.setattr(measure, "build_model", build_model)


def test_measure_times_batch_1_latency_and_batch_throughput_on_the_first_validation_videos(
        untrained_run, clock, monkeypatch):
    """Each forward takes 2 ms a video on the fake clock, 1 ms more on the realized path."""
    from vidbench import engine, flops

    run_dir = untrained_run("adafuse")
    evaluate(run_dir, progress=False)
    spec = engine.load_spec(run_dir)
    calls = []

    def clocked(model, clip):
        sparse = next(m for m in model.modules() if isinstance(m, Realizable)).sparse
        calls.append((clip.clone(), sparse))
        clock.now += 0.002 * len(clip) + 0.001 * sparse

    before_each_forward(monkeypatch, clocked)
    monkeypatch.setattr(flops, "attach", None)           # the cost table saved by training serves: no new count
    figures = measure.measure(run_dir)
    settings = spec["eval"]          # latency_videos 2, warm-up 1, 2 throughput batches (workflow/config/test.yaml)
    assert (settings["latency_videos"], settings["latency_warmup"], settings["throughput_batches"]) == (2, 1, 2)
    assert figures["latency_ms"]["masked"] == pytest.approx({"median": 2.0, "p10": 2.0, "p90": 2.0, "n": 2})
    assert figures["latency_ms"]["realized"] == pytest.approx({"median": 3.0, "p10": 3.0, "p90": 3.0, "n": 2})
    assert figures["throughput_vps"]["masked"]["median"] == pytest.approx(16 / 0.032)
    assert figures["throughput_vps"]["realized"]["median"] == pytest.approx(16 / 0.033)
    # latency: (1 + 2) rounds of both paths on videos 0, 1, 0; throughput: (1 + 2) rounds on the batch; the logit gap
    assert [(len(clip), sparse) for clip, sparse in calls] == (
        [(1, False), (1, True), (1, True), (1, False), (1, False), (1, True)]
        + [(16, False), (16, True), (16, True), (16, False), (16, False), (16, True)] + [(16, False), (16, True)])
    first_batch = next(iter(engine.make_loader(spec, "val", train=False, batch_size=16)))[0]
    for call, video in zip(calls[:6], [0, 0, 1, 1, 0, 0]):
        torch.testing.assert_close(call[0], first_batch[video:video + 1], rtol=0, atol=0)
    torch.testing.assert_close(calls[6][0], first_batch, rtol=0, atol=0)


def test_the_cpu_is_named_by_its_processor_or_else_its_architecture(monkeypatch):
    import os
    import platform

    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(platform, "processor", lambda: "")
    assert measure._device_name(torch.device("cpu")) == f"cpu (x86_64, {os.cpu_count()} logical CPUs)"
    monkeypatch.setattr(platform, "processor", lambda: "AMD EPYC")
    assert measure._device_name(torch.device("cpu")) == f"cpu (AMD EPYC, {os.cpu_count()} logical CPUs)"


def test_a_static_method_has_one_path_and_its_realized_figures_are_the_masked_ones(measured, monkeypatch):
    passes = []
    before_each_forward(monkeypatch, lambda model, clip: passes.append(len(clip)))
    _, figures = measured("tsn")
    assert passes == [1] * (2 + 3) + [16] * (1 + 2)     # warm-up and timed passes of one path
    assert figures["sparse_path"] is False and "max_logit_gap" not in figures
    for kind in ("latency_ms", "throughput_vps"):
        assert figures[kind]["realized"] == figures[kind]["masked"]
    assert figures["latency_ms"]["masked"]["n"] == 3 and figures["throughput_vps"]["masked"]["n"] == 2
    assert figures["run"] == {"dataset": "synth-sthv1", "method": "tsn", "point": "default",
                              "backbone": "resnet_tiny", "seed": 0}
    assert "eval_points" not in figures and "checkpoint_latency_ms" not in figures


def test_the_setting_records_how_the_figures_were_timed(measured):
    threads = torch.get_num_threads()
    try:
        _, figures = measured("adafuse", threads=2)
    finally:
        torch.set_num_threads(threads)
    assert figures["setting"] == {"device": measure._device_name(torch.device("cpu")), "threads": 2, "warmup": 2,
                                  "latency_repeats": 3, "latency_videos": 3, "throughput_batch": 16,
                                  "torch": torch.__version__}
    assert figures["setting"]["device"].startswith("cpu (") and figures["sparse_path"] is True
    assert 0 <= figures["max_logit_gap"] < 1e-4
    masked, realized = (figures["throughput_vps"][p] for p in ("masked", "realized"))
    assert masked["n"] == realized["n"] == 2 and masked != realized


def test_early_exit_points_weigh_the_checkpoint_latencies_by_their_exit_shares(measured, monkeypatch):
    monkeypatch.setattr(measure, "exit_latencies", lambda *args: [10.0, 20.0, 40.0])
    metrics, figures = measured("earlyexit")
    shares = metrics["stats"]["exit_at"]
    assert figures["checkpoint_latency_ms"] == [10.0, 20.0, 40.0]
    assert figures["expected_latency_ms"] == pytest.approx(10 * shares[0] + 20 * shares[1] + 40 * shares[2])
    masked = figures["latency_ms"]["masked"]["median"]
    expected = [{"point": p["point"], "latency_ms": pytest.approx(sum(
        ms * s for ms, s in zip([10.0, 20.0, 40.0], p["exit_share"]))), "latency_masked_ms": masked}
        for p in metrics["eval_points"]]
    assert figures["eval_points"] == expected and len(expected) > 2


@pytest.mark.parametrize("bad", ["eval_points", "stats"])
def test_exit_shares_that_do_not_match_the_checkpoints_name_the_metrics_file(tmp_path, monkeypatch, bad):
    monkeypatch.setattr(measure, "exit_latencies", lambda *args: [10.0, 20.0, 40.0])
    shares = {"eval_points": [0.5, 0.5, 0.0], "stats": [1.0, 0.0, 0.0]}
    shares[bad] = [1.0, 0.0]
    points = [{"point": "thr 0.5", "exit_share": shares["eval_points"]}]
    (tmp_path / "metrics.json").write_text(json.dumps({"stats": {"exit_at": shares["stats"]}, "eval_points": points}))
    with pytest.raises(InputError, match=f"^{tmp_path / 'metrics.json'}: 2 exit shares for 3 checkpoints"):
        measure.exit_points(None, tmp_path, [], torch.device("cpu"), 1, 0, {"median": 50.0})


def test_measure_runs_writes_latency_json_per_run(untrained_run, capsys):
    run_dir = untrained_run("tsn")
    evaluate(run_dir, progress=False)
    threads = torch.get_num_threads()
    try:
        measure.run(types.SimpleNamespace(runs=[str(run_dir)], threads=2))
    finally:
        torch.set_num_threads(threads)
    figures = json.loads((run_dir / measure.LATENCY).read_text())
    median = figures["latency_ms"]["masked"]["median"]
    assert figures["run"]["method"] == "tsn" and figures["setting"]["threads"] == 2
    assert capsys.readouterr().out == (f"{run_dir}: batch-1 latency masked {median:.2f} ms, "
                                       f"realized {median:.2f} ms\n")
