"""summary.csv from fake metrics.json files, the paper tables and the Pareto plots."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pandas as pd
import pytest

from analysis import aggregate, plots, tables
from vidbench.errors import InputError


def fake_metrics(root, dataset, method, point="default", backbone="resnet_tiny", seed=0, *, top1=30.0,
                 gflops=1.0, paper_label=None, stats=None, eval_points=None, model=None, frames=None):
    run_dir = root / "runs" / dataset / method / point / backbone / f"seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "run": {"dataset": dataset, "method": method, "point": point, "backbone": backbone, "seed": seed},
        "title": method.upper(), "paper_label": paper_label or method.upper(),
        "top1": top1, "top5": top1 + 20, "gflops": gflops, "params_m": 0.5, "train_time_s": 3.0,
        "latency_ms": 2.0, "num_videos": 20, "unreadable": {"count": 1, "items": ["x"]},
        "stats": stats or {}, "config": {"model": model or {"dropout": 0.5}}, "environment": {"torch": "2"},
    }
    if eval_points is not None:
        data["eval_points"] = eval_points
    if frames is not None:
        data["config"]["data"] = {"num_segments": frames}
    (run_dir / "metrics.json").write_text(json.dumps(data))
    return run_dir / "metrics.json"


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    for seed, top1 in ((0, 10.0), (1, 14.0)):
        fake_metrics(root, "synth-sthv1", "tsn", seed=seed, top1=top1, gflops=2.0, paper_label="TSN")
    # AdaFuse as methods/adafuse writes it: paper_label "AdaFuse", points named after published rows,
    # policy fractions at the top of stats, per-backbone model values
    fake_metrics(root, "synth-sthv1", "adafuse", top1=40.0, gflops=1.5, paper_label="AdaFuse",
                 stats={"skip": 0.2, "reuse": 0.3, "keep": 0.5, "per_block": [{"block": "b1", "skip": 0.1}]},
                 model={"lam": {"resnet_tiny": 2.0, "default": 0.1}, "hidden": 512})
    fake_metrics(root, "synth-sthv1", "adafuse", point="lam-lo", top1=42.0, gflops=1.8, paper_label="AdaFuse",
                 model={"lam": 0.05, "hidden": 512})
    fake_metrics(root, "synth-sthv1", "adafuse", point="reuse-only", top1=35.0, gflops=1.9, paper_label="AdaFuse",
                 stats={"skip": 0.0, "reuse": 0.4, "keep": 0.6})
    fake_metrics(root, "synth-sthv1", "adaskip", top1=9.0, gflops=0.8, paper_label="Ada. Skip",
                 stats={"policy": {"skip": 0.5, "reuse": 0.0, "keep": 0.5}})
    fake_metrics(root, "synth-jester", "early_exit", top1=60.0, gflops=1.2, paper_label="Early exit",
                 eval_points=[{"point": "t0.5", "top1": 50.0, "gflops": 0.6, "exit_rate": 0.7},
                              {"point": "t0.9", "top1": 58.0, "top5": 80.0, "gflops": 0.9}])
    fake_metrics(root, "synth-sthv2", "adafuse", point="tsm-last", backbone="resnet50", top1=55.0, gflops=3.0,
                 paper_label="AdaFuse", model={"hidden": {"resnet50": 1024, "default": 32}, "lam": 0.075},
                 stats={"skip": 0.15, "reuse": 0.13, "keep": 0.72})
    fake_metrics(root, "synth-sthv2", "adafuse_tsm_last", point="h64", backbone="resnet50", top1=50.0, gflops=2.5,
                 paper_label="AdaFuse-TSM+Last", model={"hidden": 64, "lam": 0.1},
                 stats={"policy": {"skip": 0.15, "reuse": 0.13, "keep": 0.72}})
    return root


@pytest.fixture
def summary(results):
    out = results / "summary.csv"
    aggregate.run(SimpleNamespace(runs=[str(results / "runs")], metrics=[], out=str(out)))
    return out


def test_aggregate_rows_and_eval_points(summary):
    frame = pd.read_csv(summary, dtype={"point": str})
    assert len(frame) == 11  # 9 runs + 2 eval points
    ee = frame[frame["method"] == "early_exit"].set_index("point")
    assert set(ee.index) == {"default", "t0.5", "t0.9"}
    assert ee.loc["t0.5", "top1"] == 50.0 and ee.loc["t0.5", "gflops"] == 0.6
    assert ee.loc["t0.5", "trained_point"] == "default" and ee.loc["t0.5", "exit_rate"] == 0.7
    assert math.isnan(ee.loc["t0.5", "top5"]) and ee.loc["t0.9", "top5"] == 80.0
    assert ee.loc["t0.5", "params_m"] == 0.5
    ada = frame[(frame["method"] == "adafuse") & (frame["point"] == "default")].iloc[0]
    assert ada["skip"] == 0.2 and ada["keep"] == 0.5 and ada["cfg_lam"] == 2.0  # resnet_tiny's value
    assert "per_block" not in frame.columns and "policy_per_block" not in frame.columns
    h64 = frame[frame["point"] == "h64"].iloc[0]
    assert h64["policy_skip"] == 0.15 and h64["cfg_hidden"] == 64
    assert ada["unreadable"] == 1
    for col in aggregate.COLUMNS:
        assert col in frame.columns
    assert not list(summary.parent.glob(".summary.csv.*"))  # no temporary left behind


def test_aggregate_malformed_metrics_names_file(tmp_path):
    bad = tmp_path / "runs" / "x" / "metrics.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"run": {"dataset": "d"}, ')
    with pytest.raises(InputError, match="metrics.json.*malformed JSON"):
        aggregate.collect([bad])
    bad.write_text(json.dumps({"run": {"dataset": "d", "method": "m", "point": "p", "backbone": "b", "seed": 0},
                               "top1": "high", "gflops": 1}))
    with pytest.raises(InputError, match=r"metrics.json: top1 is 'high'"):
        aggregate.collect([bad])
    bad.write_text(json.dumps({"top1": 1}))
    with pytest.raises(InputError, match=r"missing keys \['run', 'gflops'\]"):
        aggregate.collect([bad])


def test_aggregate_empty_and_duplicates(tmp_path, results):
    out = tmp_path / "empty.csv"
    aggregate.write_csv(aggregate.collect([]), out)
    assert list(pd.read_csv(out).columns)[:5] == list(aggregate.RUN_KEYS)
    one = next(results.rglob("metrics.json"))
    with pytest.raises(InputError, match="duplicate summary row"):
        aggregate.collect([one, one])


def test_tables_published_beside_reproduced(summary, tmp_path):
    out = tmp_path / "tables"
    tables.run(SimpleNamespace(summary=str(summary), out=str(out), tables=None, figure="final"))
    for name in tables.table_names():
        assert (out / f"{name}.md").is_file() and (out / f"{name}.csv").is_file()
    t1 = pd.read_csv(out / "table1.csv", dtype=str, keep_default_na=False)
    tsn = t1[(t1["method"] == "TSN") & (t1["backbone"] == "ResNet18")].iloc[0]
    assert tsn["paper_top1"] == "14.8" and float(tsn["top1"]) == 12.0 and tsn["n"] == "2"
    assert tsn["run_backbone"] == "resnet_tiny" and tsn["run_dataset"] == "synth-sthv1"
    ada = t1[(t1["method"] == "AdaFuse-TSN") & (t1["backbone"] == "ResNet18")]
    assert list(ada["run_point"]) == ["default"] and float(ada["top1"].iloc[0]) == 40.0  # not lam-lo/reuse-only
    cg = t1[t1["method"] == "CGNet"].iloc[0]
    assert cg["paper_gflops"] == "11.2" and cg["gflops"] == "" and cg["n"] == "0"
    inc = t1[t1["backbone"] == "BN-Inception"]
    assert (inc["n"] == "0").all()
    md = (out / "table1.md").read_text()
    assert "synth-sthv1" in md and "not comparable" in md and "resnet_tiny stands in for ResNet18" in md
    # seeds 10 and 14: mean 12, sd = sqrt(8) = 2.83, half-width t(0.975, 1) * sd / sqrt(2) = 12.706 * 2 = 25.41
    assert "| 14.8 | 12.00 ± 2.83 [-13.41, 37.41] |" in md
    assert "| 36.9 | 40.00 (n = 1) |" in md  # one seed: said plainly, no interval
    assert float(tsn["top1_sd"]) == pytest.approx(2.8284, abs=1e-3)
    assert float(tsn["top1_lo"]) == pytest.approx(-13.4124, abs=1e-3) and float(tsn["top1_hi"]) == pytest.approx(37.4124, abs=1e-3)
    assert "\\toprule" in (out / "table1.tex").read_text() and "\\pm" in (out / "table1.tex").read_text()

    t6 = pd.read_csv(out / "table6.csv", dtype=str, keep_default_na=False).set_index("method")
    assert float(t6.loc["AdaFuse-TSN-R18", "skip_pct"]) == pytest.approx(20.0)
    assert float(t6.loc["Ada.Skip", "top1"]) == 9.0 and t6.loc["Ada.Skip", "paper_top1"] == "9.5"
    assert t6.loc["Ada.Reuse", "run_point"] == "reuse-only" and float(t6.loc["Ada.Reuse", "reuse_pct"]) == 40.0
    assert t6.loc["Random", "n"] == "0"

    t7 = pd.read_csv(out / "table7.csv", dtype=str, keep_default_na=False)
    hit = t7[(t7["hidden_units"] == "1024") & (t7["lambda"] == "0.075")].iloc[0]
    assert float(hit["top1"]) == 55.0 and hit["paper_top1"] == "59.75" and float(hit["reuse_pct"]) == pytest.approx(13)
    assert hit["run_point"] == "tsm-last"
    extra = t7[t7["paper_top1"] == ""]
    assert list(extra["hidden_units"]) == ["64"] and float(extra["top1"].iloc[0]) == 50.0

    t5 = pd.read_csv(out / "table5.csv", dtype=str, keep_default_na=False)
    assert set(t5["dataset"]) == {"sthv1", "sthv2"}
    i3d = t5[t5["method"] == "I3D"]
    assert list(i3d["dataset"]) == ["sthv1"]  # no published V2 numbers -> no V2 row
    tsm_last = t5[(t5["method"] == "AdaFuse-TSM+Last") & (t5["dataset"] == "sthv2")].iloc[0]
    assert tsm_last["paper_top1"] == "59.8" and float(tsm_last["top1"]) == 55.0

    t3 = pd.read_csv(out / "table3.csv", dtype=str, keep_default_na=False)
    assert len(t3) >= 24 and (t3[t3["dataset"] == "jester"]["n"] == "0").all()


def test_dynamic_inference_table(tmp_path):
    root = tmp_path / "results"
    fake_metrics(root, "synth-sthv1", "tsn", top1=12.0, gflops=2.0, paper_label="TSN")
    fake_metrics(root, "synth-sthv2", "tsm", backbone="resnet50", top1=50.0, gflops=33.0, paper_label="TSM")
    sweep = [{"point": "thr 0.9", "top1": 47.0, "gflops": 1.4}, {"point": "first exit", "top1": 20.0, "gflops": 0.5}]
    for seed, top1 in ((0, 40.0), (1, 44.0)):
        fake_metrics(root, "synth-sthv1", "earlyexit", seed=seed, top1=top1, gflops=1.2,
                     paper_label="DynamicInference", eval_points=sweep, frames=8)
    fake_metrics(root, "sthv2", "earlyexit", backbone="resnet50", top1=57.0, gflops=47.0,
                 paper_label="DynamicInference")
    fake_metrics(root, "sthv2", "earlyexit_msdnet", backbone="resnet50", top1=59.0, gflops=36.0,
                 paper_label="DynamicInference-MSDNet", eval_points=sweep)
    fake_metrics(root, "synth-sthv1", "earlyexit_frames", top1=30.0, gflops=0.4, paper_label="DynamicInference-frames",
                 eval_points=sweep)
    summary = tmp_path / "summary.csv"
    aggregate.run(SimpleNamespace(runs=[str(root / "runs")], metrics=[], out=str(summary)))
    out = tmp_path / "tables"
    tables.run(SimpleNamespace(summary=str(summary), out=str(out), tables=["dynamic", "table3"], figure="final"))

    dyn = pd.read_csv(out / "dynamic.csv", dtype=str, keep_default_na=False)
    rows = {(r["method"], r["backbone"], r["dataset"]): r for _, r in dyn.iterrows()}
    ee = rows["DynamicInference", "ResNet50", "sthv1"]  # earlyexit's default point, not its threshold sweep
    assert ee["paper_top1"] == "45.2" and ee["paper_gflops"] == "52.8" and float(ee["top1"]) == 42.0
    assert ee["run_method"] == "earlyexit" and ee["run_point"] == "default" and ee["n"] == "2"
    assert ee["run_backbone"] == "resnet_tiny" and float(ee["top5"]) == 62.0
    assert ee["frames"] == "8" and ee["paper_frames"] == "16"   # the run's frame count beside the published
    assert rows["TRN-Multiscale", "BNInception", "sthv1"]["paper_frames"] == ""   # not published
    ee2 = rows["DynamicInference", "ResNet50", "sthv2"]
    assert ee2["run_method"] == "earlyexit" and ee2["run_dataset"] == "sthv2" and float(ee2["top1"]) == 57.0
    msd = rows["DynamicInference", "MSDNet-38", "sthv2"]  # earlyexit_msdnet on resnet50 = MSDNet-38-like
    assert msd["paper_top1"] == "60.0" and float(msd["top1"]) == 59.0 and msd["run_point"] == "default"
    assert msd["run_method"] == "earlyexit_msdnet" and msd["run_backbone"] == "resnet50"
    assert len(dyn[dyn["method"] == "DynamicInference"]) == 4  # one row each: no method in another's row
    assert rows["DynamicInference", "MSDNet-38", "sthv1"]["n"] == "0"
    tsn = rows["TSN-8F", "ResNet50", "sthv1"]
    assert tsn["paper_top1"] == "19.7" and float(tsn["top1"]) == 12.0 and tsn["run_method"] == "tsn"
    tsm = rows["TSM-8F", "ResNet50", "sthv2"]
    assert tsm["paper_top5"] == "84.8" and float(tsm["top1"]) == 50.0 and tsm["run_method"] == "tsm"
    published_only = (("TSN-16F", "ResNet50", "sthv1"), ("TSM-16F", "ResNet50", "sthv2"),
                      ("TRN-Multiscale", "BNInception", "sthv2"))
    for key in published_only:
        assert rows[key]["n"] == "0" and rows[key]["top1"] == "" and rows[key]["paper_top1"] != ""
    assert rows["TRN-Multiscale", "BNInception", "sthv1"]["paper_top5"] == ""  # printed "-"
    frames = dyn[dyn["method"] == "DynamicInference-frames"]  # unpublished: shown only where a run matches
    assert list(frames["dataset"]) == ["sthv1"] and frames["paper_top1"].iloc[0] == ""
    assert float(frames["top1"].iloc[0]) == 30.0 and frames["run_point"].iloc[0] == "default"
    md = (out / "dynamic.md").read_text()
    assert "Dynamic Inference slides" in md and "resnet_tiny stands in for ResNet50 and MSDNet-38" in md
    assert "| 45.2 | 42.00 ± 2.83 [16.59, 67.41] |" in md
    note = tables.build_table("dynamic", pd.read_csv(summary))[1]
    assert note.splitlines()[-1] == "resnet_tiny stands in for ResNet50 and MSDNet-38."   # one sentence a line

    # resnet_tiny stands in for ResNet50 only in the dynamic table: table 3 keeps it to ResNet18
    t3 = pd.read_csv(out / "table3.csv", dtype=str, keep_default_na=False)
    tsn3 = t3[(t3["method"] == "TSN") & (t3["dataset"] == "sthv1")].set_index("backbone")
    assert tsn3.loc["ResNet18", "n"] == "1" and tsn3.loc["ResNet50", "n"] == "0"


def test_tables_without_runs(tmp_path):
    out = tmp_path / "summary.csv"
    aggregate.write_csv([], out)
    tables.run(SimpleNamespace(summary=str(out), out=str(tmp_path / "t"), tables=None, figure="final"))
    md = (tmp_path / "t" / "table3.md").read_text()
    assert "published numbers only" in md and "| 82.6 |" in md
    dyn = pd.read_csv(tmp_path / "t" / "dynamic.csv", dtype=str, keep_default_na=False)
    assert len(dyn) == 14 and "DynamicInference-frames" not in set(dyn["method"])  # published rows only
    tables.check_published()


def test_pareto_front_hand_example():
    #            0    1    2    3    4    5
    gflops = [1.0, 2.0, 2.0, 3.0, 0.5, 4.0]
    top1 = [10.0, 20.0, 15.0, 18.0, 5.0, 30.0]
    # 2 dominated by 1 (same cost, lower acc); 3 dominated by 1 (more cost, lower acc)
    assert plots.pareto_front(gflops, top1) == [4, 0, 1, 5]
    assert plots.pareto_front([1.0, 1.0], [5.0, 5.0]) == [0]
    assert plots.pareto_front([], []) == []


def test_plots_written_for_every_dataset(summary, tmp_path):
    out = tmp_path / "plots"
    plots.run(SimpleNamespace(summary=str(summary), out=str(out),
                              datasets=["synth-sthv1", "synth-jester", "synth-sthv2", "synth-minikinetics"]))
    for ds in ("synth-sthv1", "synth-jester", "synth-sthv2", "synth-minikinetics"):
        for ext in ("png", "pdf"):
            assert (out / f"pareto_{ds}.{ext}").stat().st_size > 1000
    frame = plots.points(pd.read_csv(summary, dtype={"point": str}), "synth-jester")
    assert list(frame["gflops"]) == [0.6, 0.9, 1.2]


def test_plot_curves_join_sweeps_and_eval_points_only():
    rows = [("adafuse", "default", "default", 0.5, 90), ("adafuse", "lam-hi", "lam-hi", 0.4, 85),
            ("adafuse", "skip-only", "skip-only", 0.3, 60), ("earlyexit", "default", "default", 0.7, 95),
            ("earlyexit", "thr 0.1", "default", 0.5, 80), ("tsn", "default", "default", 1.0, 50)]
    summary = pd.DataFrame([{"dataset": "d", "method": m, "point": p, "trained_point": t, "backbone": "resnet_tiny",
                             "seed": 0, "gflops": g, "top1": a, "title": m.upper()} for m, p, t, g, a in rows])
    frame = plots.points(summary, "d", {"adafuse": ("lam-lo", "default", "lam-hi")})
    curves = frame.groupby("curve")["point"].apply(set).to_dict()
    assert curves == {"adafuse/sweep": {"default", "lam-hi"}, "adafuse/skip-only": {"skip-only"},
                      "earlyexit/default": {"default", "thr 0.1"}, "tsn/default": {"default"}}
    labels = dict(zip(frame["point"] + "@" + frame["method"], frame["label"]))
    assert labels["skip-only@adafuse"] == "ADAFUSE (skip-only)" and labels["lam-hi@adafuse"] == "ADAFUSE"


def test_runs_whose_status_is_not_ok_are_left_out_and_named(tmp_path):
    root = tmp_path / "results"
    for seed, top1 in ((0, 10.0), (1, 14.0)):
        fake_metrics(root, "synth-sthv1", "tsn", seed=seed, top1=top1, gflops=2.0, paper_label="TSN")
    for seed, top1 in ((0, 40.0), (1, 44.0)):
        fake_metrics(root, "synth-sthv1", "adafuse", seed=seed, top1=top1, gflops=1.5, paper_label="AdaFuse")
    bad = fake_metrics(root, "synth-sthv1", "tsn", seed=2, top1=99.0, gflops=2.0, paper_label="TSN")
    bad.write_text(json.dumps({**json.loads(bad.read_text()), "status": "diverged: loss is nan"}))
    summary = tmp_path / "summary.csv"
    aggregate.run(SimpleNamespace(runs=[str(root / "runs")], metrics=[], out=str(summary)))
    assert list(pd.read_csv(summary)["status"]).count("diverged: loss is nan") == 1
    out = tmp_path / "tables"
    tables.run(SimpleNamespace(summary=str(summary), out=str(out), tables=["table1"], figure="final"))
    t1 = pd.read_csv(out / "table1.csv", dtype=str, keep_default_na=False)
    tsn = t1[(t1["method"] == "TSN") & (t1["backbone"] == "ResNet18")].iloc[0]
    assert tsn["n"] == "2" and float(tsn["top1"]) == 12.0
    # paired with TSN: 40 - 10 and 44 - 14 -> exactly +30; GFLOPs 1.5 / 2 = 0.75 beside the paper's 10.3 / 14.6
    ada = t1[(t1["method"] == "AdaFuse-TSN") & (t1["backbone"] == "ResNet18")].iloc[0]
    assert float(ada["top1_vs_tsn"]) == 30.0 and float(ada["top1_vs_tsn_p"]) == 0.0
    assert float(ada["gflops_rel_tsn"]) == 0.75 and float(ada["paper_gflops_rel_tsn"]) == pytest.approx(10.3 / 14.6)
    md = (out / "table1.md").read_text()
    assert "synth-sthv1/tsn/default/resnet_tiny/seed2 (diverged: loss is nan)" in md
    assert "| +30.00 [30.00, 30.00], p < 0.001 | 0.75 [0.75, 0.75] | 0.71 |" in md
    plots.run(SimpleNamespace(summary=str(summary), out=str(tmp_path / "plots"), datasets=["synth-sthv1"]))
    plotted = pd.read_csv(tmp_path / "plots" / "pareto_synth-sthv1.csv")
    assert list(plotted.sort_values("method")["n"]) == [2, 2] and plotted["top1"].max() == 42.0
    # both points have 2 seeds: 95% interval of 40, 44 is 42 +- 25.41
    assert plotted["top1_hi"].max() == pytest.approx(67.41, abs=1e-2)


def test_agreement_kendall_and_published_inside_interval_on_real_data(tmp_path):
    root = tmp_path / "results"
    # real-data runs (no synth- prefix), ResNet18, Something-V1: published TSN 14.8 / LSTM 28.4 / AdaFuse 36.9
    values = {"tsn": ("TSN", (14.0, 15.0, 16.0), 14.6), "lstm": ("LSTM", (20.0, 21.0, 22.0), 14.7),
              "adafuse": ("AdaFuse", (35.0, 37.0, 39.0), 10.3)}
    for method, (label, top1s, gflops) in values.items():
        for seed, top1 in enumerate(top1s):
            fake_metrics(root, "sthv1", method, backbone="resnet18", seed=seed, top1=top1, gflops=gflops,
                         paper_label=label)
    summary = tmp_path / "summary.csv"
    aggregate.run(SimpleNamespace(runs=[str(root / "runs")], metrics=[], out=str(summary)))
    out = tmp_path / "tables"
    tables.run(SimpleNamespace(summary=str(summary), out=str(out), tables=["table3"], figure="final"))
    t3 = pd.read_csv(out / "table3.csv", dtype=str, keep_default_na=False)
    rows = t3[(t3["dataset"] == "sthv1") & (t3["backbone"] == "ResNet18")].set_index("method")
    # TSN 15 +- 2.48 contains 14.8; LSTM 21 +- 2.48 misses 28.4; AdaFuse 37 +- 4.97 contains 36.9
    assert list(rows["top1_paper_inside_ci"]) == ["yes", "no", "yes"]
    assert list(rows["gflops_paper_inside_ci"]) == ["yes", "yes", "yes"]   # exact GFLOPs equal to the paper's
    agree = pd.read_csv(out / "agreement.csv", dtype=str, keep_default_na=False).set_index("dataset")
    # same Top-1 order as published (14.8 < 28.4 < 36.9): tau 1; GFLOPs the same order: tau 1
    assert float(agree.loc["sthv1", "tau_top1"]) == 1.0 and float(agree.loc["sthv1", "tau_gflops"]) == 1.0
    assert agree.loc["sthv1", "rows_top1"] == "3" and agree.loc["sthv1", "inside_ci"] == "5 of 6"
    assert "inside the reproduced 95% interval" in (out / "table3.md").read_text()


def test_error_bars_only_where_seeds_give_an_interval():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("tsn", 0, 10.0), ("tsn", 1, 14.0), ("adafuse", 0, 40.0)]
    summary = pd.DataFrame([{"dataset": "d", "method": m, "point": "default", "trained_point": "default",
                             "backbone": "resnet_tiny", "seed": s, "gflops": 1.0, "top1": a, "title": m}
                            for m, s, a in rows])
    data = plots.points(summary, "d")
    fig, ax = plt.subplots()
    plots._error_bars(ax, data, {"tsn": "red", "adafuse": "blue"})
    bars = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(bars) == 1  # tsn: 2 seeds; adafuse: one seed, no bar
    xerr, yerr = bars[0].lines[2]  # (data line, caps, (x bars, y bars))
    # Top-1 10 and 14: 12 +- 25.41 (t(0.975, 1) = 12.706 times sd 2.83 / sqrt(2)); GFLOPs constant: no width
    assert yerr.get_segments()[0][:, 1] == pytest.approx([12 - 25.412, 12 + 25.412], abs=1e-2)
    assert xerr.get_segments()[0][:, 0] == pytest.approx([1.0, 1.0])
    plt.close(fig)


def test_the_pareto_plot_draws_the_error_bars(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    rows = [("tsn", 0, 10.0), ("tsn", 1, 14.0), ("adafuse", 0, 40.0)]
    summary = pd.DataFrame([{"dataset": "d", "method": m, "point": "default", "trained_point": "default",
                             "backbone": "resnet_tiny", "seed": s, "gflops": 1.0, "top1": a, "title": m,
                             "params_m": 0.1, "status": "ok"} for m, s, a in rows])
    drawn, save = [], Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *args, **kw: (drawn.append(fig), save(fig, *args, **kw))[1])
    plots.plot_dataset(summary, "d", tmp_path)
    bars = [c for c in drawn[0].axes[0].containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(bars) == 1 and bars[0].lines[2][1].get_segments()[0][:, 1] == pytest.approx([12 - 25.412, 12 + 25.412],
                                                                                            abs=1e-2)


def test_tables_show_the_final_figure_unless_the_best_is_asked_for(tmp_path):
    summary = pd.DataFrame([{"dataset": "synth-sthv1", "method": "tsn", "point": "default", "backbone": "resnet_tiny",
                             "seed": 0, "top1": 40.0, "top1_best": 55.0, "gflops": 1.0}])
    assert tables.with_figure(summary, "final")["top1"].tolist() == [40.0]
    assert tables.with_figure(summary, "best")["top1"].tolist() == [55.0]
    assert "optimistic" in tables.FIGURES["best"]


def test_every_summary_row_names_its_metrics_file_and_title(tmp_path):
    file = fake_metrics(tmp_path, "synth-jester", "early_exit", eval_points=[{"point": "t0.5", "top1": 5.0,
                                                                             "gflops": 0.1}])
    data = json.loads(file.read_text())
    del data["title"], data["paper_label"]
    file.write_text(json.dumps(data))
    data["eval_points"][0]["num_videos"] = 7
    data["unreadable"] = {}
    file.write_text(json.dumps(data))
    rows = aggregate.rows_of(file)
    assert [row["metrics"] for row in rows] == [str(file)] * 2          # the run and its eval point
    assert [row["num_videos"] for row in rows] == [20, 7] and type(rows[1]["num_videos"]) is int
    assert rows[0]["unreadable"] == 0
    assert {row["title"] for row in rows} == {row["paper_label"] for row in rows} == {"early_exit"}
    data["eval_points"][0]["top5"] = "many"
    file.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"eval_points\[0\]\.top5 is 'many'"):
        aggregate.rows_of(file)


def test_gflops_below_one_stay_gflops_in_the_tables(tmp_path):
    """Only the policy shares are fractions turned into percent; a small model's GFLOPs are not."""
    fake_metrics(tmp_path, "synth-sthv1", "tsn", gflops=0.25, paper_label="TSN")
    out = tmp_path / "summary.csv"
    aggregate.run(SimpleNamespace(runs=[str(tmp_path / "runs")], metrics=[], out=str(out)))
    frame, _ = tables.build_table("table1", aggregate.read_summary(out))
    assert frame.loc[frame["n"] > 0, "gflops"].tolist() == [0.25]


def test_tables_without_a_paper_label_column_match_by_method(tmp_path):
    summary = pd.DataFrame([{"dataset": "synth-sthv1", "method": "TSN", "point": "default",
                             "backbone": "resnet_tiny", "seed": 0, "top1": 20.0, "gflops": 0.5}])
    frame, _ = tables.build_table("table1", summary)
    assert frame.loc[frame["n"] > 0, "top1"].tolist() == [20.0]


def test_realized_table_ratios_to_tsn_in_csv_md_and_tex(tmp_path):
    from analysis import realized

    rows = [{"dataset": "synth-sthv1", "method": m, "point": "default", "backbone": "resnet_tiny", "seed": s,
             "title": m.upper(), "top1": 50.0, "gflops": g, "latency_ms": t, "latency_masked_ms": t * 1.5}
            for s in (0, 1) for m, g, t in (("tsn", 2.0, 10.0), ("adafuse", 1.0, 8.0), ("tsm", 2.0, 11.0),
                                            ("lstm", 2.2, 15.0))]
    pd.DataFrame(rows).to_csv(tmp_path / "summary.csv", index=False)
    realized.run(SimpleNamespace(summary=tmp_path / "summary.csv", out=tmp_path / "tables"))

    table = pd.read_csv(tmp_path / "tables" / "realized.csv").set_index("method")
    assert table.loc["adafuse", "flops_ratio"] == pytest.approx(0.5)
    assert table.loc["adafuse", "latency_ratio"] == pytest.approx(0.8)
    assert table.loc["adafuse", "masked_latency_ratio"] == pytest.approx(1.2)
    assert table.loc["adafuse", "realized"] == pytest.approx(0.4)  # 20% of time saved out of 50% of FLOPs
    assert math.isnan(table.loc["tsm", "realized"]) and table.loc["adafuse", "n"] == 2  # no FLOP saving to realize
    assert math.isnan(table.loc["lstm", "realized"])  # more FLOPs and more time than TSN: (-0.5) / (-0.1) is no 5
    assert (tmp_path / "tables" / "realized.md").read_text() == "\n".join([
        f"# {realized.TITLE}", "", realized.NOTE, "", "## synth-sthv1, resnet_tiny", "",
        "| method | point | Top-1 | GFLOPs | ms | flops | latency | masked | realized |",
        "|---|---|---|---|---|---|---|---|---|",
        "| ADAFUSE | default | 50.0 | 1.0000 | 8.00 | 0.50 | 0.80 | 1.20 | 0.40 |",
        "| TSM | default | 50.0 | 2.0000 | 11.00 | 1.00 | 1.10 | 1.65 |  |",
        "| TSN | default | 50.0 | 2.0000 | 10.00 | 1.00 | 1.00 | 1.50 |  |",
        "| LSTM | default | 50.0 | 2.2000 | 15.00 | 1.10 | 1.50 | 2.25 |  |", ""])
    assert (tmp_path / "tables" / "realized.csv").read_text().startswith(",".join(realized.COLUMNS) + "\n")
    tex = (tmp_path / "tables" / "realized.tex").read_text()
    assert "\\begin{tabular}{llllrrrrrrr}" in tex and f"\\caption{{{realized.TITLE}}}" in tex
    assert "synth-sthv1 & resnet\\_tiny & ADAFUSE & default & 50.0 & 1.0000 & 8.00 & 0.50" in tex


def test_realized_table_of_a_summary_without_timings_titles_or_tsn_everywhere():
    """A summary written before `vidbench measure` ran (no latency columns), without titles, with eval points
    beside trained rows (trained_point empty on the latter) and a dataset that has no TSN run."""
    from analysis import realized

    summary = pd.DataFrame([
        {"dataset": "synth-sthv1", "method": "tsn", "point": "default", "trained_point": None, "gflops": 2.0},
        {"dataset": "synth-sthv1", "method": "earlyexit", "point": "default", "trained_point": None, "gflops": 2.1},
        {"dataset": "synth-sthv1", "method": "earlyexit", "point": "t0.5", "trained_point": "default", "gflops": 1.5},
        {"dataset": "synth-jester", "method": "adafuse", "point": "default", "trained_point": None, "gflops": 1.0},
    ]).assign(backbone="resnet_tiny", seed=0, top1=50.0)
    table = realized.realized_table(summary)
    assert list(table.columns) == realized.COLUMNS and list(table.index) == [0, 1, 2]
    assert table["dataset"].tolist() == ["synth-sthv1"] * 3  # no TSN on synth-jester: nothing to compare with
    assert table["point"].tolist() == ["t0.5", "default", "default"]  # by FLOPs ratio
    assert table["trained_point"].tolist() == ["default"] * 3 and table["title"].tolist() == ["earlyexit", "tsn",
                                                                                                "earlyexit"]
    assert table["flops_ratio"].tolist() == pytest.approx([0.75, 1.0, 1.05])
    assert table[["latency_ms", "latency_masked_ms", "latency_ratio", "realized"]].isna().all().all()
    assert "| earlyexit | default: t0.5 | 50.0 | 1.5000 |  | 0.75 |  |  |  |" in realized.markdown(table)


def test_aggregate_of_named_metrics_files_keeps_frames_points_and_timings(tmp_path):
    sweep = [{"point": "t0.5", "top1": 50.0, "gflops": 0.6, "exit_rate": 0.7}]
    file = fake_metrics(tmp_path, "synth-jester", "earlyexit", point="wide", eval_points=sweep, frames=8)
    (file.parent / "latency.json").write_text(json.dumps({
        "latency_ms": {"realized": {"median": 3.0, "p10": 2.5, "p90": 3.5}, "masked": {"median": 4.0}},
        "throughput_vps": {"realized": {"median": 300.0}, "masked": {"median": 250.0}},
        "eval_points": [{"point": "t0.5", "latency_ms": 1.5, "latency_masked_ms": 4.0}]}))
    out = tmp_path / "summary.csv"
    aggregate.run(SimpleNamespace(runs=[], metrics=[str(file)], out=str(out)))
    frame = pd.read_csv(out, dtype={"point": str}).set_index("point")
    assert list(frame.index) == ["wide", "wide/t0.5"]           # a point of a non-default run is prefixed
    assert (frame["frames"] == 8).all() and (frame["metrics"] == str(file)).all()
    assert frame.loc["wide/t0.5", "latency_ms"] == 1.5 and frame.loc["wide", "latency_p90_ms"] == 3.5
    assert math.isnan(frame.loc["wide/t0.5", "latency_p90_ms"])  # a point's latency has no spread of its own
    timing = aggregate.read_latency(file.parent / "latency.json")
    assert set(timing["points"]["t0.5"]) == set(timing["run"])   # the same columns for runs and points
    assert aggregate.excluded_note(frame.iloc[:0]) == ""


def test_an_early_exit_runs_latency_is_its_mean_over_the_splits_exit_shares(tmp_path):
    file = tmp_path / "latency.json"
    file.write_text(json.dumps({
        "latency_ms": {"realized": {"median": 1.4, "p10": 1.0, "p90": 3.8}, "masked": {"median": 4.0}},
        "throughput_vps": {"realized": {"median": 300.0}, "masked": {"median": 250.0}},
        "checkpoint_latency_ms": [1.0, 4.0], "expected_latency_ms": 2.2}))
    run = aggregate.read_latency(file)["run"]
    assert run["latency_ms"] == 2.2            # not the median of the first videos (1.4)
    assert math.isnan(run["latency_p10_ms"]) and math.isnan(run["latency_p90_ms"])
    assert (run["latency_masked_ms"], run["throughput_vps"], run["throughput_masked_vps"]) == (4.0, 300.0, 250.0)


def _nan_as_text(row: dict) -> dict:
    return {k: "nan" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


def test_a_run_and_its_eval_point_hold_every_field_of_metrics_json(tmp_path):
    file = tmp_path / "metrics.json"
    file.write_text(json.dumps({
        "run": {"dataset": "synth-jester", "method": "earlyexit", "point": "default", "backbone": "resnet18",
                "seed": 2.0},
        "status": " ok ", "title": "Early exit", "paper_label": "Early exit (ResNet)", "top1": 40, "top5": None,
        "gflops": 1.5, "dense_gflops": 2.0, "params_m": 11.0, "train_time_s": 3.0, "latency_ms": 9.0,
        "best": {"top1": 42, "epoch": 3}, "epochs": 5, "num_videos": 20, "unreadable": 3,
        "config": {"data": {"num_segments": 8},
                   "model": {"lam": {"resnet18": 0.1, "default": 2.0}, "flag": True, "blocks": [1, 2]}},
        "stats": {"skip": 0.2, "top1": 1.0, "policy": {"frozen": False}, "per_block": [{"skip": 0.1}]},
        "eval_points": [{"point": "t0.5", "top1": 30, "gflops": 1.0, "num_videos": 7, "exit_rate": 0.5,
                         "epochs": 2}],
    }))
    run_row, point_row = (_nan_as_text(row) for row in aggregate.rows_of(file))
    base = {"dataset": "synth-jester", "method": "earlyexit", "backbone": "resnet18", "seed": 2, "status": "ok",
            "trained_point": "default", "title": "Early exit", "paper_label": "Early exit (ResNet)",
            "num_videos": 20, "unreadable": 3, "top1": 40.0, "top5": "nan", "gflops": 1.5, "dense_gflops": 2.0,
            "params_m": 11.0, "train_time_s": 3.0, "top1_best": 42.0, "best_epoch": 3, "epochs": 5, "frames": 8,
            "cfg_lam": 0.1, "cfg_flag": True, "metrics": str(file)}
    assert run_row == {**base, "point": "default", "latency_ms": 9.0, "skip": 0.2, "stats_top1": 1.0,
                       "policy_frozen": False}
    assert type(run_row["seed"]) is int
    # an eval point: the run's fields and config, its own figures, no run statistics, no timings of its own
    assert point_row == {**base, "point": "t0.5", "top1": 30.0, "gflops": 1.0, "num_videos": 7,
                         **dict.fromkeys(aggregate.LATENCY, "nan"), "exit_rate": 0.5, "stats_epochs": 2}


def test_a_run_row_falls_back_to_the_method_then_the_title_and_checks_each_field(tmp_path):
    run = {"dataset": "d", "method": "tsn", "point": "p", "backbone": "b", "seed": 0}
    file = tmp_path / "metrics.json"

    def row(**fields):
        file.write_text(json.dumps({"run": run, "top1": 1.0, "gflops": 1.0, **fields}))
        return aggregate.rows_of(file)

    assert {k: row()[0][k] for k in ("title", "paper_label")} == {"title": "tsn", "paper_label": "tsn"}
    assert row(title="TSN")[0]["paper_label"] == "TSN"
    assert row(config={"model": ["not", "a", "mapping"]})[0].keys().isdisjoint({"cfg_0", "cfg_not"})
    with pytest.raises(InputError, match=rf"^{file}: top1 is None"):
        row(top1=None)
    with pytest.raises(InputError, match=rf"^{file}: best\.top1 is 'x'"):
        row(best={"top1": "x"})
    with pytest.raises(InputError, match=rf"^{file}: eval_points\[0\]\.top1 is 'x'"):
        row(eval_points=[{"point": "t", "top1": "x", "gflops": 1.0}])
    for entry in ({"top1": 1.0, "gflops": 1.0}, {"point": "t", "gflops": 1.0}, {"point": "t", "top1": 1.0}):
        with pytest.raises(InputError, match=r"eval_points\[0\] is"):
            row(eval_points=[entry])
    for broken in ({k: v for k, v in run.items() if k != "seed"}, {**run, "point": None}, {**run, "backbone": ""}):
        file.write_text(json.dumps({"run": broken, "top1": 1.0, "gflops": 1.0}))
        with pytest.raises(InputError, match="'run' is"):
            aggregate.rows_of(file)


def test_aggregate_reads_runs_and_named_files_together_and_names_both_duplicates(tmp_path):
    first = fake_metrics(tmp_path / "a", "synth-sthv1", "tsn", stats={"skip": 0.1}, model={"lam": 0.5})
    fake_metrics(tmp_path / "b", "synth-sthv1", "tsn", seed=1)
    out = tmp_path / "summary.csv"
    aggregate.run(SimpleNamespace(runs=[str(tmp_path / "b")], metrics=[str(first)], out=str(out)))
    frame = pd.read_csv(out)
    assert frame["seed"].tolist() == [0, 1]
    assert list(frame.columns) == [*aggregate.COLUMNS, "skip", "cfg_dropout", "cfg_lam", "metrics"]
    copy = first.with_name("copy.json")
    copy.write_text(first.read_text())
    with pytest.raises(InputError, match=rf"^{copy}: duplicate .* \(also in {first}\)"):
        aggregate.collect([first, copy])


def test_a_summary_keeps_its_names_as_text_and_must_hold_the_key_columns(tmp_path):
    path = tmp_path / "summary.csv"
    names = {"dataset": "2025", "method": "007", "point": "0.50", "trained_point": "0.50"}
    pd.DataFrame([{**names, "backbone": "resnet18", "seed": 0, "top1": 1.0, "gflops": 1.0}]).to_csv(path, index=False)
    assert aggregate.read_summary(path).iloc[0][list(names)].to_dict() == names
    pd.DataFrame([{**names, "backbone": "resnet18", "seed": 0, "top1": 1.0}]).to_csv(path, index=False)
    with pytest.raises(InputError, match=r"summary lacks columns \['gflops'\]"):
        aggregate.read_summary(path)


def test_runs_left_out_are_named_once_each_with_their_status():
    rows = pd.DataFrame([
        {"dataset": "d", "method": "earlyexit", "point": p, "trained_point": "default", "backbone": "b", "seed": 0,
         "status": "diverged: nan"} for p in ("default", "t0.5")]
        + [{"dataset": "d", "method": "tsn", "point": "default", "trained_point": "default", "backbone": "b",
            "seed": 1, "status": math.nan}])
    ok, excluded = aggregate.usable(rows)
    assert ok["method"].tolist() == ["tsn"] and len(excluded) == 2    # an empty status is ok
    one_run = ("Left out: 1 run(s) whose status is not ok (2 summary row(s)): "
               "d/earlyexit/default/b/seed0 (diverged: nan).")
    assert aggregate.excluded_note(excluded) == one_run
    # without trained_point (a summary not written by aggregate) each point is a run of its own
    assert aggregate.excluded_note(excluded.drop(columns="trained_point")) == (
        "Left out: 2 run(s) whose status is not ok (2 summary row(s)): "
        "d/earlyexit/default/b/seed0 (diverged: nan); d/earlyexit/t0.5/b/seed0 (diverged: nan).")


def test_timings_without_eval_points_fill_the_run_row_only(tmp_path):
    file = fake_metrics(tmp_path, "synth-sthv1", "tsn")
    (file.parent / "latency.json").write_text(json.dumps({
        "latency_ms": {"realized": {"median": 3.0, "p10": 2.5, "p90": 3.5}, "masked": {"median": 4.0}},
        "throughput_vps": {"realized": {"median": 300.0}, "masked": {"median": 250.0}}}))
    timing = aggregate.read_latency(file.parent / "latency.json")
    assert timing["points"] == {} and timing["run"]["throughput_masked_vps"] == 250.0


def test_best_figure_of_a_summary_without_it_is_empty():
    summary = pd.DataFrame([{"top1": 40.0}])
    assert tables.with_figure(summary, "best")["top1"].isna().all()


def test_tables_of_runs_without_policy_shares_or_settings_leave_those_cells_empty():
    runs = [{"dataset": "synth-sthv1", "method": "adafuse", "point": "skip-only", "backbone": "resnet_tiny",
             "paper_label": "AdaFuse", "seed": 0, "top1": 20.0, "gflops": 0.5},
            {"dataset": "synth-sthv2", "method": "adafuse", "point": "tsm-last", "backbone": "resnet50",
             "paper_label": "AdaFuse", "seed": 0, "top1": 50.0, "gflops": 30.0}]
    table6, _ = tables.build_table("table6", pd.DataFrame(runs))
    row = table6[table6["n"] > 0].iloc[0]
    assert row["method"] == "Ada.Skip" and row["top1"] == 20.0 and math.isnan(row["skip_pct"])
    # a share that is no number is left empty as well
    table6, _ = tables.build_table("table6", pd.DataFrame(runs).assign(skip="n/a"))
    assert math.isnan(table6.loc[table6["n"] > 0, "skip_pct"].iloc[0])
    # no hidden size or lambda to match a published row by: the run is an extra row with those cells empty
    table7, _ = tables.build_table("table7", pd.DataFrame(runs))
    assert table7["n"].tolist() == [0] * 5 + [1]
    assert table7.iloc[-1][["hidden_units", "lambda", "top1"]].tolist() == ["", "", 50.0]


def test_a_published_table_without_a_column_its_spec_reads_is_named(monkeypatch):
    monkeypatch.setitem(tables.TABLES, "table7", {**tables.TABLES["table7"], "match": {"width": ("cfg_width",)}})
    with pytest.raises(InputError, match=r"table7_hidden_lambda\.csv: column 'width' missing"):
        tables.check_published()
