"""Issue 13's fidelity items (the harness against the released code and the published rows), and the
README's fidelity table: every parameter count and GFLOPs figure it prints, rebuilt from the models."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from snakemake.utils import update_config

from analysis import aggregate, tables
from vidbench import config as cfg
from vidbench.flops import attach, count_params
from vidbench.plugins import get_method
from vidbench.policy import KEEP, REUSE, SKIP
from vidbench.train import make_optimizer, param_groups

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "workflow" / "config"
SGD = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "bias_lr_mult": 2.0}


def build(method, backbone="resnet_tiny", point="default", classes=10, frames=4, size=None, **overrides):
    spec = get_method(method)
    model = spec.build({**spec.point_config(point), **overrides}, backbone=backbone, num_classes=classes,
                       num_segments=frames)
    size = size or (32 if backbone == "resnet_tiny" else 224)
    return attach(model, (frames, 3, size, size))


# ---- 1. CGNet's threshold trains with the ordinary weights (released: lr x1, weight decay)
def test_cgnet_threshold_trains_as_a_weight():
    model = build("cgnet")
    optimizer = make_optimizer(model, SGD)
    weights, biases, _ = ({id(p) for p in group["params"]} for group in optimizer.param_groups)
    thetas = [gate.theta for _, gate in model.gates]
    assert thetas and all(id(theta) in weights and id(theta) not in biases for theta in thetas)
    assert optimizer.param_groups[0]["lr"] == 0.01 and optimizer.param_groups[0]["weight_decay"] == 5e-4
    assert id(model.fc.bias) in biases                    # 1-D parameters without a stated group stay biases


def test_a_stated_group_must_be_known():
    layer = torch.nn.Linear(2, 2)
    layer.bias.optimizer_group = "thresholds"
    with pytest.raises(ValueError, match="parameter bias: optimizer_group is 'thresholds'"):
        param_groups(layer, 5e-4)


# ---- 2. Threshold's default point is the published Table 1 operating point
def test_threshold_keeps_what_the_released_code_keeps():
    model = build("threshold").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 4, 3, 32, 32))
    kept = [hook.actions[..., KEEP].sum(-1) for hook in model.hooks()]      # [B, T] channels kept per frame
    assert [int(k.unique().item()) for k in kept] == [int(0.76 * hook.channels) for hook in model.hooks()]
    assert out.stats["actions"][:, REUSE].eq(0).all()


def test_table1_note_names_the_threshold_keep_ratio(tmp_path):
    root = tmp_path / "results"
    fake_metrics(root, "synth-sthv1", "threshold", paper_label="Threshold", model={"keep_ratio": 0.76})
    frame, note = tables.build_table("table1", summarize(root, tmp_path))
    assert "Threshold keeps the top 0.76 of conv1's output channels per frame" in note
    assert frame[frame["method"] == "Threshold"]["n"].tolist() == [1]


# ---- 3. Early exit at the Dynamic Inference table's frame count
def test_paper_16f_runs_the_dynamic_inference_rows_at_16_frames(tmp_path):
    from test_real_layouts import fake_imagenet_weights

    config = yaml.safe_load((CONFIGS / "paper.yaml").read_text())
    paths = {"datasets": {}, "model": {"pretrained": {}}}
    for name in config["datasets"]:
        (tmp_path / name).mkdir()
        paths["datasets"][name] = {"root": str(tmp_path / name)}
    for backbone in ("resnet18", "resnet50"):
        paths["model"]["pretrained"][backbone] = str(fake_imagenet_weights(tmp_path / f"{backbone}.pth", backbone))
    for overlay in (paths, yaml.safe_load((CONFIGS / "paper-16f.yaml").read_text())):
        update_config(config, overlay)                  # what `snakemake --configfile a b c` does
    config = cfg.validate_config(config)
    runs = cfg.runs(config)
    assert sorted(runs) == sorted((d, m, "default", "resnet50", 0) for d in ("sthv1", "sthv2")
                                  for m in ("earlyexit", "earlyexit_msdnet"))
    spec = cfg.resolve_run(config, "sthv2", "earlyexit_msdnet", "default", "resnet50", 0)
    assert spec["data"]["num_segments"] == 16 and spec["data"]["input_size"] == 224
    assert spec["train"]["optimizer"] == "sgd" and spec["run_dir"].startswith("results-paper-16f/")


def test_dynamic_table_labels_the_frame_count(tmp_path):
    root = tmp_path / "results"
    fake_metrics(root, "sthv1", "earlyexit", backbone="resnet50", paper_label="DynamicInference", frames=8)
    fake_metrics(root, "sthv2", "earlyexit", backbone="resnet50", paper_label="DynamicInference", frames=16)
    frame, note = tables.build_table("dynamic", summarize(root, tmp_path))
    shown = tables.display("dynamic", frame)
    rows = shown[shown["method"] == "DynamicInference"].set_index(["backbone", "dataset"])
    assert rows.loc[("ResNet50", "sthv1"), ["paper_frames", "frames"]].tolist() == ["16", "8"]
    assert rows.loc[("ResNet50", "sthv2"), ["paper_frames", "frames"]].tolist() == ["16", "16"]
    assert rows.loc[("MSDNet-38", "sthv1"), "frames"] == ""                      # no run
    assert shown.set_index("method").loc["TSN-16F", "paper_frames"].tolist() == ["16", "16"]
    assert "16 is inferred" in note and "different setting" in note


# ---- 4. MSDNet-38 as kalviny/MSDNet-PyTorch builds it for ImageNet (run_imagenet.sh: step 7, base 7)
def test_msdnet38_structure():
    net = build("earlyexit_msdnet", "resnet50", classes=1000, frames=1).net
    dense_layers = [m for m in net.modules() if type(m).__name__ == "DenseLayer"]
    transitions = [m for m in net.modules() if type(m).__name__ == "Transition"]
    assert len(dense_layers) == 35 and len(net.heads) == 5
    assert [layer.first_out for layer in dense_layers].count(3) == 35 - 27      # a scale dropped every 9 layers
    assert len(transitions) == 3                                                 # only where a scale is dropped
    assert net.heads[0].fc.in_features == net.heads[0].features[0][0].in_channels  # ImageNet classifiers: C -> C


# ---- 5. AdaFuse evaluates as released (seeded Gumbel draws) and reports the argmax figure beside it
def test_paper_recipe_evaluates_adafuse_with_gumbel_draws():
    paper = yaml.safe_load((CONFIGS / "paper.yaml").read_text())
    assert {name: entry["methods"]["adafuse"]["eval_sampling"] for name, entry in paper["datasets"].items()} == \
        dict.fromkeys(paper["datasets"], "gumbel")


def test_gumbel_evaluation_reports_the_argmax_point():
    torch.manual_seed(0)
    sampled = build("adafuse", init_std=1.0, eval_sampling="gumbel").eval()
    argmax = build("adafuse", init_std=1.0)
    argmax.load_state_dict(sampled.state_dict())
    clips, labels = torch.randn(6, 4, 3, 32, 32), torch.randint(0, 10, (6,))
    with torch.no_grad():
        out, reference = sampled(clips), argmax.eval()(clips)
    assert torch.equal(out.stats["argmax_logits"], reference.logits)
    assert not torch.equal(out.logits, reference.logits)               # the reported figure is the sampled one
    outputs = {"logits": out.logits, "labels": labels, "flops": out.flops,
               **{f"stats.{k}": v for k, v in out.stats.items()}}
    [point] = sampled.eval_points(outputs)
    assert point["point"] == "argmax" and point["gflops"] == pytest.approx(reference.flops.mean().item() / 1e9)
    summary = sampled.summarize({k: v.double().mean(0).tolist() for k, v in out.stats.items()})
    assert not any(key.startswith("argmax") for key in summary)
    assert argmax.eval_points({k: v for k, v in outputs.items() if not k.startswith("stats.argmax")}) == []


def test_eval_points_of_several_trained_points_stay_apart(tmp_path):
    root = tmp_path / "results"
    for point in ("default", "tsm"):
        fake_metrics(root, "sthv1", "adafuse", point=point, paper_label="AdaFuse",
                     eval_points=[{"point": "argmax", "top1": 40.0, "gflops": 1.0}])
    frame = summarize(root, tmp_path)
    assert sorted(frame["point"]) == ["argmax", "default", "tsm", "tsm/argmax"]


# ---- 6. TSM's learning rate: its own authors' Something recipe
def test_paper_recipe_trains_tsm_at_its_authors_rate():
    paper = yaml.safe_load((CONFIGS / "paper.yaml").read_text())
    assert paper["train"]["lr"] == 0.01 and "tsm" not in paper["per_method"]
    assert paper["per_method"]["adafuse"]["points"]["tsm"]["train"]["lr"] == 0.02


# ---- 7. Small departures from the released code
@pytest.mark.parametrize("method", ["tsn", "tsm", "cgnet", "threshold", "random", "adafuse", "lstm"])
def test_classifier_starts_as_released_on_the_paper_backbones(method):
    spec = get_method(method)
    cfg_ = {**spec.defaults, "distribution": [0.0, 0.0, 1.0]} if method == "random" else spec.defaults
    paper, tiny = (spec.build(cfg_, backbone=backbone, num_classes=174, num_segments=2).fc
                   for backbone in ("resnet18", "resnet_tiny"))
    assert paper.weight.std().item() == pytest.approx(0.001, rel=0.05) and torch.all(paper.bias == 0)
    assert tiny.weight.std().item() > 0.01        # the CPU stand-in keeps PyTorch's default (README, Fidelity)


def test_lstm_drops_out_the_frame_features_before_the_cell():
    model = build("lstm").train()
    seen = {}
    model.lstm.register_forward_pre_hook(lambda module, args: seen.setdefault("cell", args[0]))
    model.fc.register_forward_pre_hook(lambda module, args: seen.setdefault("fc", args[0]))
    model(torch.rand(8, 4, 3, 32, 32))
    assert 0.35 < (seen["cell"] == 0).float().mean().item() < 0.65     # dropout 0.5 on the features
    assert (seen["fc"] == 0).float().mean().item() < 0.05               # none on the cell's output


@pytest.mark.parametrize("point, history", [("skip-only", False), ("reuse-only", True), ("default", True)])
def test_policy_net_shape_follows_the_released_ablations(point, history):
    """The policy sees frame t-1 only when it may reuse (Ada.Skip: frame t alone) and has one output per
    allowed action (Ada.Skip and Ada.Reuse: two)."""
    model = build("adafuse", point=point)
    actions = len(get_method("adafuse").point_config(point)["actions"])
    for _, block in model.backbone.blocks():
        hook = block.policy
        assert hook.fc1.in_features == (2 if history else 1) * block.conv1.in_channels
        assert hook.fc2.out_features == actions * block.width and hook.history == history
    hook = model.backbone.layer1[0].policy.eval()
    x = torch.randn(2 * 4, model.backbone.layer1[0].conv1.in_channels, 8, 8)
    changed = x.clone()
    changed[0] += 1.0                        # frame 0 of video 0: frame 1 sees it only through the history
    assert torch.equal(hook.logits(x)[1], hook.logits(changed)[1]) != history


# ---- 8. The released FLOPs code at the last frame (reported: Eq. 5; measured beside it)
def test_released_last_frame_cost():
    model = build("adafuse", force="keep").eval()
    hooks = model.hooks()
    for hook in hooks:                        # keep everything at frames 0..2, skip everything at frame 3
        actions = torch.zeros(2, 4, hook.channels, 3)
        actions[:, :3, :, KEEP] = 1
        actions[:, 3, :, SKIP] = 1
        hook.actions = actions
    conv1 = sum(model.cost(hook.conv1_name) for hook in hooks) / 4
    # Eq. 5 computes nothing of conv1 at the skipped last frame; the released code looks at frame 2 (kept)
    assert model.released_last_frame(hooks).tolist() == pytest.approx([conv1, conv1])
    with torch.no_grad():
        out = model(torch.randn(2, 4, 3, 32, 32))
    assert torch.equal(out.stats["released_flops"], out.flops)          # all kept: both counts agree
    assert model.summarize({k: v.double().mean(0).tolist() for k, v in out.stats.items()})["released_gflops"] == \
        pytest.approx(out.flops.double().mean().item() / 1e9)


# ---- The README's fidelity table, rebuilt
README_ROW = re.compile(r"^\| (?P<table>[^|]+) \| (?P<row>[^|]+) \| `(?P<build>[^`]+)` \| (?P<params>[^|]+) \| "
                        r"(?P<paper_params>[^|]*) \| (?P<gflops>[^|]+) \| (?P<paper_gflops>[^|]*) \|$")


def readme_rows() -> list[dict]:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Fidelity")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end > 0 else None]
    return [m.groupdict() for m in map(README_ROW.match, section.splitlines()) if m]


def build_from(words: str):
    """`<method> <point> <backbone> [key=value ...]` (classes, frames: the clip; other keys: model config)
    -> (the model with its cost table, its frame count).

    No parameter depends on the frame count, and every model here costs the same at every frame (shift,
    reuse and the LSTM's steps included): the model is built for one frame and its cost scaled (much
    faster to trace)."""
    method, point, backbone, *options = words.split()
    settings = {key: yaml.safe_load(value) for key, value in (option.split("=", 1) for option in options)}
    classes, frames = settings.pop("classes", 174), settings.pop("frames", 8)
    spec = get_method(method)
    model = spec.build({**spec.point_config(point), **settings}, backbone=backbone, num_classes=classes,
                       num_segments=1)
    return attach(model, (1, 3, 224, 224)).eval(), frames


def gflops_cells(model, frames: int, cell: str) -> list[tuple[float, float]]:
    """(printed, rebuilt GFLOPs per video) for a GFLOPs cell: "x" what a video costs through the model (a
    static model), "<= x" a dynamic model's dense cost, "a - b" an early-exit model's first-exit and dense
    costs."""
    numbers = [float(n) for n in re.findall(r"\d+\.\d+", cell)]
    if " - " in cell:
        rebuilt = [model.exit_costs()[0].item(), model.dense_flops]
    elif "≤" in cell:
        rebuilt = [model.dense_flops]
    else:
        with torch.no_grad():
            rebuilt = [model(torch.randn(1, 1, 3, 224, 224, generator=torch.Generator().manual_seed(0))).flops.item()]
    return [(printed, macs * frames / 1e9) for printed, macs in zip(numbers, rebuilt)]


@pytest.mark.parametrize("method, point", [("lstm", "default"), ("adafuse", "tsm"), ("earlyexit_msdnet", "default")])
def test_cost_and_params_scale_from_one_frame(method, point):
    one, eight = (build(method, point=point, frames=t, size=32) for t in (1, 8))
    assert eight.dense_flops == pytest.approx(8 * one.dense_flops, rel=1e-12)
    assert count_params(eight) == count_params(one)


# builds the fidelity table must hold: every published row the harness builds, each hidden size of Table 7
REQUIRED_BUILDS = {"tsn default resnet18", "cgnet default resnet18", "threshold default resnet18", "lstm default resnet18",
                   "adafuse default resnet18", "adafuse skip-only resnet18", "adafuse reuse-only resnet18",
                   "tsn default resnet50", "lstm default resnet50", "adafuse default resnet50", "tsm default resnet50",
                   "adafuse tsm resnet50", "adafuse tsm-last resnet50", "adafuse tsm-last resnet50 hidden=2048",
                   "adafuse tsm-last resnet50 hidden=4096", "earlyexit default resnet50 frames=16",
                   "earlyexit_msdnet default resnet50 frames=16"}


def published_numbers() -> set[float]:
    numbers = set()
    for path in (ROOT / "analysis" / "paper").glob("*.csv"):
        for row in csv.reader(path.open()):
            numbers.update(float(cell) for cell in row if re.fullmatch(r"\d+(\.\d+)?", cell))
    return numbers


def test_readme_fidelity_table_is_what_the_models_build():
    rows = readme_rows()
    printed_tables = {t.strip() for row in rows for t in row["table"].split(",")}
    assert printed_tables >= {"1", "3", "5", "6", "7", "DI"}
    assert REQUIRED_BUILDS <= {row["build"].strip() for row in rows}
    published = published_numbers()
    for row in rows:                                # the "Paper" columns are the transcribed tables' figures
        for cell in (row["paper_params"], row["paper_gflops"]):
            printed = [float(n) for n in re.findall(r"\d+(?:\.\d+)?", re.sub(r"\b[TV]\d\b", "", cell))]
            assert set(printed) <= published, f"README fidelity row {row['row'].strip()}: {cell}"
    for row in rows:
        model, frames = build_from(row["build"])
        where = f"README fidelity row {row['table'].strip()} / {row['row'].strip()}"
        assert float(row["params"]) == round(count_params(model) / 1e6, 2), where
        for printed, rebuilt in gflops_cells(model, frames, row["gflops"]):
            assert printed == round(rebuilt, 2), where


# ---- helpers
def fake_metrics(root, dataset, method, point="default", backbone="resnet_tiny", *, paper_label, model=None,
                 frames=8, eval_points=None):
    run_dir = root / dataset / method / point / backbone / "seed0"
    run_dir.mkdir(parents=True)
    data = {"run": {"dataset": dataset, "method": method, "point": point, "backbone": backbone, "seed": 0},
            "title": method, "paper_label": paper_label, "top1": 30.0, "top5": 50.0, "gflops": 1.0,
            "params_m": 1.0, "config": {"model": model or {}, "data": {"num_segments": frames}}}
    if eval_points:
        data["eval_points"] = eval_points
    (run_dir / "metrics.json").write_text(json.dumps(data))


def summarize(root, tmp_path):
    out = tmp_path / "summary.csv"
    aggregate.run(SimpleNamespace(runs=[str(root)], metrics=[], out=str(out)))
    return aggregate.read_summary(out)
