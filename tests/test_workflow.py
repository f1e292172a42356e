"""One small end-to-end run of the workflow on a copy of the project, with a copied example method.

It checks what a user relies on: a new directory under methods/ appears in the plan, in summary.csv and
in the plots with no other edit; every stage writes its outputs; `snakemake --report` embeds the tables,
claims and plots in one page; a second run has nothing to do.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def copy_project(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def snakemake(project: Path, *args) -> subprocess.CompletedProcess:
    bin_dir = str(Path(sys.executable).parent)  # the rules call `vidbench` from this environment
    env = {**os.environ, "VIDBENCH_METHODS": str(project / "methods"), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run([*SNAKEMAKE, "--cores", "2", "--configfile", "config.yaml", *args], cwd=project,
                          capture_output=True, text=True, env=env)


def embedded_files(html: str) -> dict[str, bytes]:
    """path -> content of every result a Snakemake report embeds (as base64 data URIs)."""
    pattern = r'"([^"]+)": \{"name": "[^"]*", .*?"data_uri": "data:[^"]*?;base64,([^"]*)"'
    return {path: base64.b64decode(data) for path, data in re.findall(pattern, html)}


@pytest.mark.slow
def test_workflow_end_to_end_with_a_copied_method(tmp_path):
    project = copy_project(tmp_path / "project")
    shutil.copytree(project / "methods" / "_template", project / "methods" / "pooling_copy")
    config = yaml.safe_load((ROOT / "workflow" / "config" / "test.yaml").read_text())
    config["datasets"] = {"synth-sthv1": config["datasets"]["synth-sthv1"]}
    config.update(model={"pretrained": "synthetic"}, pretrain={"images": 64, "steps": 2, "batch_size": 16})
    (project / "config.yaml").write_text(yaml.safe_dump(config))

    plan = snakemake(project, "-n")
    assert plan.returncode == 0, plan.stderr
    assert "pooling_copy" in plan.stdout + plan.stderr

    done = snakemake(project)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = project / config["results"]
    pretrained = f"{config['data_dir']}/pretrained/resnet_tiny-synthetic.pth"
    assert (project / pretrained).stat().st_size > 0
    spec = json.loads((results / "runs/synth-sthv1/tsm/default/resnet_tiny/seed0/spec.json").read_text())
    assert spec["model"]["pretrained"] == pretrained
    summary = pd.read_csv(results / "summary.csv")
    methods = set(summary["method"])
    assert {"pooling_copy", "tsn", "tsm", "lstm", "adafuse"} <= methods
    assert set(summary[summary["method"] == "pooling_copy"]["point"]) == {"default", "no-dropout"}
    assert (summary["gflops"] > 0).all() and summary["top1"].between(0, 100).all()
    assert (results / "plots" / "pareto_synth-sthv1.png").stat().st_size > 0
    assert (results / "plots" / "pareto_synth-sthv1.pdf").stat().st_size > 0
    # a run is plotted when its status is ok; one epoch on 4 videos a class may leave a model degenerate
    # (one class for every video), and then it is left out and named in the notes
    plotted = set(pd.read_csv(results / "plots" / "pareto_synth-sthv1.csv")["method"])
    ok = set(summary[summary["status"] == "ok"]["method"])
    assert plotted == ok and "pooling_copy" in set(summary["method"])
    if ok != methods:
        assert "Left out:" in (results / "tables" / "table1.md").read_text()
    for table in ("table1", "table3", "table6", "realized"):
        assert (results / "tables" / f"{table}.md").read_text().count("|") > 10
        assert "\\toprule" in (results / "tables" / f"{table}.tex").read_text()
    claims = (results / "claims.md").read_text()
    assert "top1: adafuse - tsn" in claims and "| not enough seeds | one seed: no interval |" in claims  # seeds: [0]

    report = snakemake(project, "--report", "report.html")
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    embedded = embedded_files((project / "report.html").read_text())
    shown = [f"tables/{name}.csv" for name in ("table1", "table3", "table5", "table6", "table7", "dynamic", "agreement",
                                                "realized")]
    shown += ["claims.csv", "plots/pareto_synth-sthv1.png", "plots/latency_synth-sthv1.png", "plots/policy_distribution.png"]
    for name in shown:
        path = f"{config['results']}/{name}"
        assert embedded.get(path) == (project / path).read_bytes(), name

    again = snakemake(project, "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
