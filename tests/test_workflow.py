"""One small end-to-end run of the workflow on a copy of the project, with a copied example method.

It checks what a user relies on: a new directory under methods/ appears in the plan, in summary.csv and
in the plots with no other edit; every stage writes its outputs; a second run has nothing to do.
"""
from __future__ import annotations

import os
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


@pytest.mark.slow
def test_workflow_end_to_end_with_a_copied_method(tmp_path):
    project = copy_project(tmp_path / "project")
    shutil.copytree(project / "methods" / "_template", project / "methods" / "pooling_copy")
    config = yaml.safe_load((ROOT / "workflow" / "config" / "test.yaml").read_text())
    config["datasets"] = {"synth-sthv1": config["datasets"]["synth-sthv1"]}
    (project / "config.yaml").write_text(yaml.safe_dump(config))

    plan = snakemake(project, "-n")
    assert plan.returncode == 0, plan.stderr
    assert "pooling_copy" in plan.stdout + plan.stderr

    done = snakemake(project)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = project / config["results"]
    summary = pd.read_csv(results / "summary.csv")
    methods = set(summary["method"])
    assert {"pooling_copy", "tsn", "tsm", "lstm", "adafuse"} <= methods
    assert set(summary[summary["method"] == "pooling_copy"]["point"]) == {"default", "no-dropout"}
    assert (summary["gflops"] > 0).all() and summary["top1"].between(0, 100).all()
    assert (results / "plots" / "pareto_synth-sthv1.png").stat().st_size > 0
    assert (results / "plots" / "pareto_synth-sthv1.pdf").stat().st_size > 0
    assert "pooling_copy" in (results / "plots" / "pareto_synth-sthv1.csv").read_text()
    for table in ("table1", "table3", "table6"):
        assert (results / "tables" / f"{table}.md").read_text().count("|") > 10

    again = snakemake(project, "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
