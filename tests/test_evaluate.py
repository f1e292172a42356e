"""The evaluator's numbers: metrics.json holds what the model in eval mode gives on the validation split,
for every discovered method, and the same numbers on every evaluation."""
import json
import platform
import subprocess
from types import SimpleNamespace

import pytest
import torch

from vidbench import io as vio
from vidbench.engine import SPEC_FILE, build_model, load_spec, make_loader, seed_everything
from vidbench import evaluate as evaluator
from vidbench.evaluate import evaluate, run_status
from vidbench.metrics import accuracy
from vidbench.plugins import discover
from vidbench.train import FINAL

T_ = 2  # frames of the hand-made clips

# model overrides under which each dynamic method spends less than its dense cost on the untrained model
# (random: a fixed distribution, as no AdaFuse run is at hand to match)
DYNAMIC = {
    "adafuse": {"init_std": 1.0},                      # varied (not all-keep) policy decisions
    "random": {"distribution": [0.3, 0.3, 0.4]},
    "threshold": {},
    "cgnet": {},
    "earlyexit": {"threshold": 0.0},                   # every video leaves at the first checkpoint
    "earlyexit_frames": {"threshold": 0.0},
    "earlyexit_msdnet": {"threshold": 0.0},
}
OVERRIDES = {name: DYNAMIC.get(name, {}) for name in discover()}


def eval_mode_outputs(run_dir):
    """Per-video logits, labels and FLOPs of the trained model in eval mode, computed here, seeded as the
    evaluator seeds (a method that samples at evaluation draws the same)."""
    spec = load_spec(run_dir)
    trained = vio.load_torch(run_dir / FINAL)
    seed_everything(spec["seed"])
    model = build_model(spec, trained["costs"])
    model.load_state_dict(trained["model"])
    model.eval()
    loader = make_loader(spec, "val", train=False, batch_size=spec["eval"]["batch_size"])
    logits, labels, flops = [], [], []
    with torch.no_grad():
        for clips, batch_labels, _ in loader:
            out = model(clips)
            logits.append(out.logits)
            labels.append(batch_labels)
            flops.append(out.flops.double())
    return torch.cat(logits), torch.cat(labels), torch.cat(flops), model.dense_flops


@pytest.mark.parametrize("method", sorted(OVERRIDES))
def test_metrics_are_the_eval_mode_per_video_means(untrained_run, method):
    run_dir = untrained_run(method, **OVERRIDES[method])
    metrics = evaluate(run_dir, progress=False)
    logits, labels, flops, dense = eval_mode_outputs(run_dir)
    assert metrics["num_videos"] == len(labels)
    assert metrics["gflops"] == pytest.approx(flops.mean().item() / 1e9, rel=1e-6)
    assert metrics["dense_gflops"] == pytest.approx(dense / 1e9)
    assert {"python", "platform", "packages", "device", "threads", "git_commit"} <= set(metrics["environment"])
    assert all(metrics["environment"]["packages"].values())          # every version found
    commit = metrics["environment"]["git_commit"]
    assert commit is None or (isinstance(commit, str) and len(commit) == 40)   # None outside a git checkout
    assert (metrics["top1"], metrics["top5"]) == pytest.approx(accuracy(logits, labels))
    if method in DYNAMIC:   # the per-video mean, not the dense cost
        assert flops.mean().item() < 0.98 * dense
    else:
        assert metrics["gflops"] == pytest.approx(metrics["dense_gflops"])


@pytest.mark.parametrize("method", ["adafuse", "random", "earlyexit"])
def test_evaluation_is_deterministic(untrained_run, method):
    run_dir = untrained_run(method, **OVERRIDES[method])
    first, second = evaluate(run_dir, progress=False), evaluate(run_dir, progress=False)
    for key in ("top1", "top5", "gflops", "stats", "eval_points"):
        assert first.get(key) == second.get(key), key
    assert bool(first.get("eval_points")) == (method == "earlyexit")    # the threshold sweep of early exit


def test_latency_is_timed_on_one_video():
    from vidbench.measure import timed  # timing moved out of the evaluator into `vidbench measure`

    class Recorder(torch.nn.Module):
        def forward(self, clip):
            batches.append(clip.shape[0])

    batches = []
    videos = [torch.zeros(1, T_, 3, 8, 8), torch.zeros(1, T_, 3, 8, 8)]
    times = timed(Recorder(), videos, torch.device("cpu"), repeats=3, warmup=2, paths=("masked",))
    assert len(times["masked"]) == 3 and min(times["masked"]) >= 0
    assert batches == [1] * 5                              # two warm-up passes, then the timed ones


def test_a_model_predicting_one_class_is_degenerate_unless_the_split_is_mostly_that_class():
    labels = torch.tensor([0, 1, 2, 0, 1])
    one_class = torch.tensor([[1.0, 0.0, 0.0]] * 5)
    assert run_status({}, one_class, labels).startswith("degenerate: class 0 predicted for 100%")
    assert run_status({}, one_class, torch.tensor([0, 0, 0, 1, 2])) == "ok"     # the split is 60% class 0
    assert run_status({}, torch.eye(3)[labels], labels) == "ok"
    assert run_status({"diverged": "epoch 1"}, torch.eye(3)[labels], labels) == "diverged: epoch 1"


def test_metrics_carry_the_trained_model_size_and_training_settings(untrained_run):
    run_dir = untrained_run("tsn")
    trained = vio.load_torch(run_dir / FINAL)
    trained.update(processes=2, amp="bf16")
    vio.save_torch(trained, run_dir / FINAL)
    metrics = evaluate(run_dir, progress=False)
    assert metrics["params_m"] == pytest.approx(trained["params"] / 1e6)
    assert metrics["training"] == {"amp": "bf16", "processes": 2}
    assert metrics["unreadable_files"] == {"train": [], "eval": []}


def test_evaluation_runs_on_the_run_s_threads_and_execution(untrained_run):
    run_dir = untrained_run("adafuse", **DYNAMIC["adafuse"])
    spec = json.loads((run_dir / SPEC_FILE).read_text())
    spec["train"]["threads"], spec["eval"]["execution"] = 2, "masked"
    trained = vio.load_torch(run_dir / FINAL)
    vio.write_json(run_dir / SPEC_FILE, spec)
    vio.save_torch({**trained, "spec": spec}, run_dir / FINAL)
    threads = torch.get_num_threads()
    try:
        metrics = evaluate(run_dir, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert metrics["environment"]["threads"] == 2 and metrics["execution"] == "masked"
    assert metrics["environment"]["device"] == (platform.processor() or "cpu")


def test_the_commit_recorded_is_the_one_checked_out(tmp_path):
    assert evaluator.git_commit(tmp_path) is None                          # not a git checkout
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert evaluator.git_commit(tmp_path) == head and len(head) == 40


def test_the_evaluate_command_writes_metrics_and_prints_the_headline(untrained_run, capsys):
    run_dir = untrained_run("tsn")
    evaluator.run(SimpleNamespace(run=str(run_dir), no_progress=True))
    metrics = json.loads((run_dir / evaluator.METRICS).read_text())
    assert capsys.readouterr().out == (f"{run_dir}: top1 {metrics['top1']:.2f}  top5 {metrics['top5']:.2f}  "
                                       f"GFLOPs {metrics['gflops']:.4f}\n")


def test_metrics_name_the_run_and_scale_its_figures(untrained_run, monkeypatch):
    from vidbench import flops
    from vidbench.plugins import get_method

    run_dir = untrained_run("tsn")
    trained = vio.load_torch(run_dir / FINAL)
    trained.update(train_time_s=12.5, unreadable=["train/a.mp4"])
    for key in ("amp", "processes"):       # a model.pt written before training recorded them
        trained.pop(key, None)
    vio.save_torch(trained, run_dir / FINAL)
    monkeypatch.setattr(flops, "attach", None)           # the cost table saved by training serves: no new count
    metrics = evaluate(run_dir, progress=False)
    spec, method = load_spec(run_dir), get_method("tsn")
    assert metrics["run"] == {key: spec[key] for key in ("dataset", "method", "point", "backbone", "seed")}
    assert (metrics["title"], metrics["paper_label"]) == (method.title, method.paper_label)
    assert metrics["status"].startswith(("ok", "degenerate"))
    assert metrics["training"] == {"amp": "off", "processes": 1}
    assert metrics["train_time_s"] == 12.5 and metrics["unreadable_files"]["train"] == ["train/a.mp4"]
    assert metrics["params_m"] == trained["params"] / 1e6
    dense = build_model(spec, trained["costs"]).dense_flops
    assert metrics["gflops"] == pytest.approx(dense / 1e9, rel=1e-6) and metrics["dense_gflops"] == dense / 1e9


def test_policy_metrics_hold_the_policy_summary(untrained_run):
    metrics = evaluate(untrained_run("adafuse"), progress=False)
    assert "actions" not in metrics["stats"] and 0 <= metrics["stats"]["static_share"] <= 1


def test_a_run_is_degenerate_from_exactly_its_share_and_under_half_one_class():
    labels = torch.tensor([0, 1, 2, 3] * 5)
    mostly_zero = torch.eye(4)[torch.tensor([0] * 19 + [1])]           # class 0 for exactly 95%
    assert run_status({}, mostly_zero, labels).startswith("degenerate")
    half = torch.tensor([0] * 10 + [1, 2, 3, 1, 2, 3, 1, 2, 3, 1])      # the split is exactly 50% class 0
    assert run_status({}, torch.eye(4)[torch.zeros(20, dtype=torch.long)], half) == "ok"
    assert run_status({}, torch.eye(4)[:1], torch.tensor([1])) == "ok"  # one video says nothing


def test_the_recorded_commit_is_the_harness_checkouts_wherever_it_runs_from(tmp_path, monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    commit = evaluator.environment(torch.device("cpu"))["git_commit"]
    assert commit == evaluator.git_commit(Path(evaluator.__file__).parent)
