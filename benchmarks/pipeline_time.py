"""Time the default pipeline from scratch and check the separations the synthetic suite must show.

    python benchmarks/pipeline_time.py [--cores 2] [--workdir /tmp/vidbench-bench]

Times benchmarks/machine_ref.py's fixed workload (hosts of this kind differ up to 2x in speed), runs
`snakemake --cores N` with fresh data and results directories, prints the wall time and its ratio to
machine_ref against the budget (demo / machine_ref <= 450: 10 minutes on the slowest host) and the time
one process takes to start Python and import torch (each job pays it; it does not scale with
machine_ref, so a host fast at arithmetic shows a higher ratio), then the
checks on results/summary.csv (default operating points, runs whose status is ok; differences paired over seeds with their 95% Student-t interval, analysis/stats.py): TSN, TSM, LSTM
and AdaFuse have >= 3 seeds on every dataset; TSM and LSTM beat TSN by >= 15 Top-1 points on each
temporal dataset and AdaFuse by >= 10, each with an interval above 0; TSN is within 5 points of the
best on synth-minikinetics; AdaFuse spends <= 80% of TSN's GFLOPs everywhere and reuses more
(reuse/keep) on each temporal dataset than on synth-minikinetics; the random policy lands within 5% of
AdaFuse's GFLOPs; early exit's threshold sweeps cost more as the threshold rises.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # analysis/ from the checkout
from analysis import stats  # noqa: E402
from analysis.aggregate import usable  # noqa: E402

BUDGET_RATIO = 450  # demo seconds / machine_ref seconds: 10 minutes on the slowest host of this kind
MACHINE_REF = Path(__file__).resolve().parent / "machine_ref.py"
SEEDED = ("tsn", "tsm", "lstm", "adafuse")  # default points with >= 3 seeds in the default run
TEMPORAL = ("synth-sthv1", "synth-sthv2", "synth-jester")
APPEARANCE = "synth-minikinetics"


def machine_ref() -> float:
    """Seconds of benchmarks/machine_ref.py's fixed workload on this host (its printed median)."""
    out = subprocess.run([sys.executable, str(MACHINE_REF)], check=True, capture_output=True, text=True).stdout
    return float(out.split()[1])


def process_start() -> float:
    """Median seconds of 3 starts of Python that import torch: a part of every job's time that does not
    shrink with machine_ref's arithmetic, so hosts differ in the ratio as well as in speed."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        times.append(time.perf_counter() - start)
    return sorted(times)[1]


def run_pipeline(cores: int, workdir: Path) -> float:
    shutil.rmtree(workdir, ignore_errors=True)
    command = ["snakemake", "--cores", str(cores), "--quiet", "rules",
               "--config", f"results={workdir}/results", f"data_dir={workdir}/data"]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def threshold_of(point: str) -> float:
    """Sweep points of early exit are "first exit", "thr <t>", "no early exit" (permissive to strict)."""
    if point.startswith("thr "):
        return float(point.split()[1])
    return {"first exit": -1.0, "no early exit": 2.0}.get(point, float("nan"))


def _seeds(summary, dataset, method) -> dict[int, dict]:
    rows = summary[(summary["dataset"] == dataset) & (summary["method"] == method) & (summary["point"] == "default")]
    return {int(seed): row for seed, row in zip(rows["seed"], rows.to_dict("records"))}


def _paired(summary, dataset, a, b, column="top1") -> stats.Estimate:
    runs_a, runs_b = _seeds(summary, dataset, a), _seeds(summary, dataset, b)
    return stats.paired({s: r[column] for s, r in runs_a.items()}, {s: r[column] for s, r in runs_b.items()})


def _interval(est: stats.Estimate) -> str:
    return f"[{est.lo:+.1f}, {est.hi:+.1f}], n = {est.n}" if est.has_interval else f"n = {est.n}"


def checks(summary: pd.DataFrame) -> list[tuple[str, bool]]:
    summary, _ = usable(summary)
    main = summary[summary["point"] == "default"].groupby(["dataset", "method"]).mean(numeric_only=True)
    top1, gflops = main["top1"], main["gflops"]
    methods = set(main.index.get_level_values("method"))
    datasets = list(main.index.get_level_values("dataset").unique())
    results = []

    def check(text, ok):
        results.append((text, bool(ok)))

    for dataset in datasets:
        counts = {m: len(_seeds(summary, dataset, m)) for m in SEEDED if m in methods}
        check(f"{dataset}: seeds {counts} (>= 3 each)", all(n >= 3 for n in counts.values()))
    for dataset in TEMPORAL:
        for method in sorted({"tsm", "lstm", "adafuse"} & methods):
            margin = 10 if method == "adafuse" else 15
            gap = _paired(summary, dataset, method, "tsn")
            check(f"{dataset}: {method} - tsn = {gap.mean:+.1f} top-1 points {_interval(gap)} (>= {margin}, "
                  "interval above 0)", gap.mean >= margin and gap.has_interval and gap.lo > 0)
    if APPEARANCE in datasets:
        best = top1[APPEARANCE].max()
        check(f"{APPEARANCE}: best - tsn = {best - top1[APPEARANCE, 'tsn']:.1f} points (<= 5)",
              best - top1[APPEARANCE, "tsn"] <= 5)
    for dataset in datasets:
        if "adafuse" in methods:
            share = gflops[dataset, "adafuse"] / gflops[dataset, "tsn"]
            check(f"{dataset}: adafuse spends {share:.0%} of tsn's GFLOPs (<= 80%)", share <= 0.8)
        if (dataset, "random") in gflops.index:
            off = abs(gflops[dataset, "random"] / gflops[dataset, "adafuse"] - 1)
            check(f"{dataset}: random is {off:.1%} off adafuse's GFLOPs (<= 5%)", off <= 0.05)
    if "adafuse" in methods and "reuse_over_keep" in main.columns:
        quotient = main["reuse_over_keep"]
        for dataset in TEMPORAL:
            q, k = quotient[dataset, "adafuse"], quotient[APPEARANCE, "adafuse"]
            check(f"{dataset}: adafuse reuse/keep {q:.3f} > {APPEARANCE}'s {k:.3f}", q > k)
    for (dataset, method), curve in summary[summary["point"] != summary["trained_point"]].groupby(["dataset", "method"]):
        rising = curve.sort_values("threshold")["gflops"].diff().dropna().ge(-1e-12).all()
        check(f"{dataset}: {method}'s threshold sweep never costs less at a higher threshold", rising)
    return results


def figures(summary: pd.DataFrame) -> str:
    """The README's table: Top-1 mean [95% interval] (n) per method and dataset, AdaFuse's GFLOPs
    relative to TSN's and its reuse/keep, all over the seeds of the default points."""
    summary, _ = usable(summary)
    datasets = list(dict.fromkeys(summary["dataset"]))
    lines = ["| Top-1 (%), mean [95% interval] (n) | " + " | ".join(datasets) + " |",
             "|---|" + "---|" * len(datasets)]

    def cell(est: stats.Estimate, digits=1) -> str:
        if est.n == 0:
            return ""
        if not est.has_interval:
            return f"{est.mean:.{digits}f} (n = {est.n})"
        return f"{est.mean:.{digits}f} [{est.lo:.{digits}f}, {est.hi:.{digits}f}] ({est.n})"

    for method in SEEDED:
        values = [cell(stats.describe(r["top1"] for r in _seeds(summary, d, method).values())) for d in datasets]
        lines.append(f"| {method} | " + " | ".join(values) + " |")
    rows = {
        "adafuse - tsn, Top-1 points, paired": [cell(_paired(summary, d, "adafuse", "tsn")) for d in datasets],
        "adafuse GFLOPs / tsn's": [cell(stats.paired_ratio(
            {s: r["gflops"] for s, r in _seeds(summary, d, "adafuse").items()},
            {s: r["gflops"] for s, r in _seeds(summary, d, "tsn").items()}), 2) for d in datasets],
        "adafuse reuse/keep": [cell(stats.describe(r.get("reuse_over_keep", float("nan"))
                                                   for r in _seeds(summary, d, "adafuse").values()), 2)
                               for d in datasets],
    }
    lines += [f"| {name} | " + " | ".join(values) + " |" for name, values in rows.items()]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/vidbench-bench"))
    parser.add_argument("--summary", type=Path, help="only run the checks on an existing summary.csv")
    args = parser.parse_args()
    if args.summary is None:
        reference = machine_ref()
        seconds = run_pipeline(args.cores, args.workdir)
        ratio = seconds / reference
        print(f"default pipeline: {seconds:.0f} s on {args.cores} cores; machine_ref {reference:.2f} s; "
              f"demo / machine_ref = {ratio:.0f} (budget {BUDGET_RATIO}, {BUDGET_RATIO * reference:.0f} s here): "
              f"{'PASS' if ratio <= BUDGET_RATIO else 'FAIL'}")
        print(f"starting Python and importing torch: {process_start():.2f} s a process (one per job)")
        args.summary = args.workdir / "results" / "summary.csv"
    summary = pd.read_csv(args.summary)
    summary["threshold"] = summary["point"].map(threshold_of)
    print(figures(summary))
    results = checks(summary)
    for text, ok in results:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return 0 if all(ok for _, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
