# Shared set-up: validate the config (before any job), discover the methods, list the runs.
import copy
import json
import re
import shlex
import sys

from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)  # the checkout's vidbench/ and analysis/ even without `pip install -e`

from vidbench.config import (all_runs, backbones, configfile_text, frames_dir, prepared_dir, requirements, resolve_run,
                             run_dir, validate_config)
from vidbench.plugins import discover
from analysis.tables import table_names

# A --configfile replaces workflow/config/default.yaml instead of being merged into it (Snakemake's
# default), so a config can name fewer datasets; keys it leaves out take the schema's defaults.
# --config KEY=VALUE still overrides single keys of whichever file is in use.
CONFIG_FILES = [str(f) for f in (workflow.overwrite_configfiles or workflow.configfiles)]
if workflow.overwrite_configfiles:
    config.clear()
    config.update(copy.deepcopy(workflow.config_settings.overwrite_config))

# Our own check first: it names the config file, line and key; then Snakemake's own validation.
METHODS = discover()  # every directory under methods/ (or $VIDBENCH_METHODS) with a method.yaml
validate_config(config, source=", ".join(CONFIG_FILES) or "config", text=configfile_text(CONFIG_FILES),
                methods=METHODS)
validate(config, "../schema/config.schema.yaml", set_default=False)

RESULTS = config["results"]
DATA = config["data_dir"]
LOGS = f"{RESULTS}/logs"
RUNS = all_runs(config, METHODS)  # configured runs plus the runs they `require`
DATASETS = list(config["datasets"])
EXTRACT_DATASETS = [d for d in DATASETS if "extract" in config["datasets"][d]]  # decoded once into frames
SUMMARY = f"{RESULTS}/summary.csv"
TABLE_FILES = [f"{RESULTS}/tables/{name}.{ext}" for name in table_names() for ext in ("md", "csv")]
PLOT_FILES = [f"{RESULTS}/plots/pareto_{d}.{ext}" for d in DATASETS for ext in ("png", "pdf", "csv")]
# AdaFuse's policy figures (paper Figures 3 and 4), when AdaFuse's default point runs.
POLICY_RUNS = [run for run in RUNS if run[1] == "adafuse" and run[2] == "default"]
POLICY_PLOT_FILES = [f"{RESULTS}/plots/{name}.{ext}" for ext in ("png", "pdf") for name in
                     ["policy_distribution"] + [f"policy_blocks_{d}" for d in DATASETS if any(r[0] == d for r in POLICY_RUNS)]]

# Per train/evaluate job (cluster profiles read these); light rules get small fixed amounts.
JOB_RESOURCES = dict(config["resources"])
JOB_THREADS = config["train"]["threads"] + config["data"]["workers"]  # torch threads + data-loading processes
LIGHT = dict(mem_mb=1000, runtime=30, gpu=0)
EXTRACT_RESOURCES = dict(mem_mb=2000, runtime=24 * 60, gpu=0)  # a shard of Kinetics takes hours

RUN_PATTERN = "{dataset}/{method}/{point}/{backbone}/seed{seed}"


def _alternatives(names):
    return "|".join(re.escape(n) for n in names) or "(?!)"


wildcard_constraints:
    dataset=_alternatives(DATASETS),
    method=_alternatives(METHODS),
    backbone=_alternatives(backbones()),
    point=r"[^/]+",
    seed=r"\d+",


def run_of(wc):
    return (wc.dataset, wc.method, wc.point, wc.backbone, int(wc.seed))


def spec_json(wc):
    """The resolved run spec: a params value, so a config change re-runs the affected jobs."""
    return json.dumps(resolve_run(config, *run_of(wc), methods=METHODS), sort_keys=True)


def metrics_path(run):
    return run_dir(config, *run) + "/metrics.json"
