"""Every file `vidbench tables` writes for one summary that reaches each kind of row, kept as golden files.

The summary has real-data runs (inside-interval verdicts), synthetic stand-ins, one to three seeds, eval
points, runs that match table 7's settings and one that does not, a run left out for its status and a
`top1_best` column. The golden files were read row by row when they were written (the means, intervals,
pairings with TSN and notes below are checked by hand in test_analysis.py and test_stats.py); after an
intended change, rewrite them with `VIDBENCH_UPDATE_GOLDEN=1 pytest tests/test_tables_golden.py` and read
the diff.
"""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from analysis import aggregate, tables

GOLDEN = Path(__file__).parent / "golden" / "tables"


def _runs(dataset, backbone, method, label, point="default", *, top1, gflops, **columns):
    """One summary row per seed: top1 (and every list-valued column) gives one value per seed."""
    seeds = range(len(top1))
    columns["gflops"] = gflops
    per_seed = {k: v for k, v in columns.items() if isinstance(v, list)}
    return [{"dataset": dataset, "method": method, "point": point, "backbone": backbone, "seed": seed,
             "status": "ok", "trained_point": point, "title": label, "paper_label": label, "top1": top1[seed],
             "top5": top1[seed] + 30, "top1_best": top1[seed] + 1, "params_m": 11.2,
             **{k: v for k, v in columns.items() if k not in per_seed}, **{k: v[seed] for k, v in per_seed.items()}}
            for seed in seeds]


def summary_rows() -> list[dict]:
    rows = []
    real = ("sthv1", "resnet18")
    rows += _runs(*real, "tsn", "TSN", top1=[14.0, 15.0, 16.0], gflops=14.6)
    rows += _runs(*real, "lstm", "LSTM", top1=[20.0, 21.5, 22.0], gflops=14.7)
    rows += _runs(*real, "adafuse", "AdaFuse", top1=[35.0, 37.0, 40.0], gflops=[10.2, 10.3, 10.5],
                  skip=[0.30, 0.32, 0.34], reuse=[0.20, 0.21, 0.19])
    rows += _runs(*real, "adafuse", "AdaFuse", "skip-only", top1=[9.0], gflops=6.5, skip=0.6, reuse=0.0)
    # two points and no default: both shown, in the summary's order
    rows += _runs(*real, "threshold", "Threshold", "keep-0.76", top1=[20.0], gflops=11.28, cfg_keep_ratio=0.76)
    rows += _runs(*real, "threshold", "Threshold", "keep-0.5", top1=[18.0], gflops=8.0, cfg_keep_ratio=0.5)
    rows += _runs(*real, "random", "Random", top1=[27.0, 28.0], gflops=[10.4, 10.5],
                  policy_skip=[0.3, 0.3], policy_reuse=[0.3, 0.3])
    synth = ("synth-sthv2", "resnet50")
    rows += _runs(*synth, "tsn", "TSN", top1=[30.0, 32.0], gflops=33.0)
    rows += _runs(*synth, "tsm", "TSM", top1=[55.0, 57.0], gflops=33.0)
    rows += _runs(*synth, "adafuse", "AdaFuse", "tsm-last", top1=[58.0], gflops=31.3, cfg_hidden=1024,
                  cfg_lam=0.075, policy_skip=0.15, policy_reuse=0.13)
    rows += _runs(*synth, "adafuse_tsm_last", "AdaFuse-TSM+Last", "h64", top1=[50.0], gflops=32.0, cfg_hidden=64,
                  cfg_lam=0.1, policy_skip=0.05, policy_reuse=0.02)
    # one seed on real data: no interval, so no verdict on the published value
    rows += _runs("sthv2", "resnet50", "adafuse", "AdaFuse", "tsm-last", top1=[59.0], gflops=31.0, cfg_hidden=1024,
                  cfg_lam=0.1, policy_skip=0.18, policy_reuse=0.12)
    rows += _runs(*synth, "earlyexit", "DynamicInference", top1=[45.0], gflops=52.0, frames=16)
    rows += _runs(*synth, "earlyexit", "DynamicInference", "t0.5", top1=[40.0], gflops=30.0, frames=16,
                  trained_point="default")
    rows += _runs(*synth, "earlyexit_msdnet", "DynamicInference-MSDNet", top1=[46.0], gflops=38.4, frames=8)
    rows += _runs(*synth, "earlyexit_frames", "DynamicInference-frames", top1=[44.0], gflops=20.0, frames=8)
    rows += _runs("jester", "resnet18", "tsn", "TSN", top1=[81.0], gflops=14.6)
    tiny = ("synth-jester", "resnet_tiny")
    rows += _runs(*tiny, "tsn", "TSN", top1=[80.0, 82.0], gflops=0.5)
    rows += _runs("synth-jester", "resnet18", "tsn", "TSN", top1=[79.0], gflops=14.6)
    rows += _runs(*tiny, "adafuse", "AdaFuse", top1=[85.0, 86.0], gflops=[0.3, 0.32])
    rows += _runs(*tiny, "lstm", "LSTM", top1=[70.0, 71.0, 99.0], gflops=0.55,
                  status=["ok", "ok", "diverged: loss is nan"])
    rows += _runs("synth-minikinetics", "resnet_tiny", "tsn", "TSN", top1=[60.0], gflops=0.5)
    # AdaFuse at a point that names no published row matches AdaFuse-TSN by its paper_label; one seed in
    # common with TSN: its GFLOPs ratio has no interval
    rows += _runs("synth-minikinetics", "resnet_tiny", "adafuse", "AdaFuse", "lam-lo", top1=[62.0, 63.0],
                  gflops=[0.3, 0.31])
    return rows


CASES = {"final": (None, "final"), "best": (["table1", "dynamic"], "best"), "empty": (None, "final")}


@pytest.mark.parametrize("case", CASES)
def test_every_table_file_is_the_golden_one(tmp_path, case):
    chosen, figure = CASES[case]
    summary = tmp_path / "summary.csv"
    if case == "empty":
        aggregate.write_csv([], summary)
    else:
        pd.DataFrame(summary_rows()).to_csv(summary, index=False)
    out = tmp_path / "out" / "tables"
    if case == "best":
        out.mkdir(parents=True)   # written into a directory that exists
    tables.run(SimpleNamespace(summary=str(summary), out=str(out), tables=chosen, figure=figure))
    golden = GOLDEN / case
    written = sorted(p.name for p in out.iterdir())
    if os.environ.get("VIDBENCH_UPDATE_GOLDEN") == "1":
        golden.mkdir(parents=True, exist_ok=True)
        for old in golden.iterdir():
            old.unlink()
        for name in written:
            (golden / name).write_text((out / name).read_text())
    assert written == sorted(p.name for p in golden.iterdir())
    for name in written:
        assert (out / name).read_text() == (golden / name).read_text(), name
