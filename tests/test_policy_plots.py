"""analysis.policy_plots on fake metrics.json files."""
import argparse
import csv
import json

import pytest

from analysis import policy_plots


def fake_stats(skip, reuse, keep, blocks=4):
    rows = [{"block": f"layer{i + 1}.0", "skip": skip, "reuse": reuse, "keep": keep,
             "static_skip": skip / 2, "static_reuse": reuse / 2, "static_keep": keep / 2} for i in range(blocks)]
    return {"skip": skip, "reuse": reuse, "keep": keep, "reuse_over_keep": reuse / keep, "per_block": rows,
            "static_share": 0.5}


def write_run(root, dataset, seed, stats, point="default", status=None):
    folder = root / dataset / "adafuse" / point / "resnet_tiny" / f"seed{seed}"
    folder.mkdir(parents=True)
    metrics = {"top1": 50.0, "gflops": 0.005, "stats": stats, **({"status": status} if status else {})}
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_policy_plots_from_fake_runs(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "synth-sthv1", 0, fake_stats(0.2, 0.3, 0.5))
    write_run(runs, "synth-sthv1", 1, fake_stats(0.2, 0.5, 0.3))
    write_run(runs, "synth-sthv1", 2, fake_stats(0.9, 0.05, 0.05), status="diverged: loss is nan")  # left out
    write_run(runs, "synth-minikinetics", 0, fake_stats(0.3, 0.1, 0.6, blocks=2))
    write_run(runs, "synth-jester", 0, fake_stats(0.3, 0.1, 0.6), point="lam-hi")   # other point: ignored
    parser = argparse.ArgumentParser()
    policy_plots.add_arguments(parser)
    out = tmp_path / "plots"
    policy_plots.run(parser.parse_args(["--runs", str(runs), "--out", str(out)]))
    for stem in ("policy_distribution", "policy_blocks_synth-sthv1", "policy_blocks_synth-minikinetics"):
        assert (out / f"{stem}.png").stat().st_size > 0 and (out / f"{stem}.pdf").stat().st_size > 0
    assert not (out / "policy_blocks_synth-jester.png").exists()
    rows = {r["dataset"]: r for r in csv.DictReader((out / "policy_distribution.csv").open())}
    assert float(rows["synth-sthv1"]["reuse"]) == pytest.approx(0.4)          # mean over two seeds
    assert float(rows["synth-sthv1"]["reuse_over_keep"]) == pytest.approx(1.0)
    assert rows["synth-sthv1"]["seeds"] == "2" and rows["synth-sthv1"]["left_out"] == "1"
    assert float(rows["synth-minikinetics"]["paper_reuse_over_keep"]) == pytest.approx(0.232)


def test_trend_order_drops_with_few_blocks():
    assert policy_plots.trend([0, 1], [1.0, 2.0])[2] == 1
    assert policy_plots.trend([0, 1, 2, 3, 4], [1.0, 2.0, 0.0, 3.0, 1.0])[2] == 3
