# Shared set-up: validate the config (before any job), discover the methods, list the runs; every
# function the rules use.
import copy
import json
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

ROOT = os.path.dirname(workflow.basedir)  # the checkout: its vidbench/ and analysis/ even without `pip install -e`
sys.path.insert(0, ROOT)

from vidbench.config import (all_runs, backbones, frames_dir, prepared_dir, requirements, resolve_run, run_dir,
                             synthetic_pretrained, validate_config)
from vidbench.errors import InputError
from vidbench.plugins import broken_methods, discover
from vidbench.sources import ConfigSources
from analysis.tables import table_names

# A --configfile replaces workflow/config/default.yaml instead of being merged into it (Snakemake's
# default), so a config can name fewer datasets; keys it leaves out take the schema's defaults.
# --config KEY=VALUE still overrides single keys of whichever file is in use.
CONFIG_FILES = [str(f) for f in (workflow.overwrite_configfiles or workflow.configfiles)]
if workflow.overwrite_configfiles:
    config.clear()
    config.update(copy.deepcopy(workflow.config_settings.overwrite_config))

# Our own check first: one message naming the file and line (or the --config option) that set a bad
# value, with a close match for a misspelt name, and no traceback; then Snakemake's own validation.
# A broken method.yaml stops the plan only when the config selects that method (one message, its file and
# line); otherwise the method is left out with one warning.
try:
    METHODS = discover(warn=False)  # every directory under methods/ (or $VIDBENCH_METHODS) with a valid method.yaml
    validate_config(config, ConfigSources.from_files(CONFIG_FILES, workflow.config_settings.config), methods=METHODS)
except InputError as err:
    print(f"vidbench: config error: {err}", file=sys.stderr)
    sys.exit(1)
for name, err in broken_methods().items():
    print(f"vidbench: method {name!r} left out: {err}", file=sys.stderr)
validate(config, "../schema/config.schema.yaml", set_default=False)

RESULTS = config["results"]
DATA = config["data_dir"]
LOGS = f"{RESULTS}/logs"
RUNS = all_runs(config, METHODS)  # configured runs plus the runs they `require`
DATASETS = list(config["datasets"])
EXTRACT_DATASETS = [d for d in DATASETS if "extract" in config["datasets"][d]]  # decoded once into frames
SUMMARY = f"{RESULTS}/summary.csv"
TABLES = [*table_names(), "agreement"]  # the paper's tables, then published-vs-reproduced rank agreement
TABLE_FILES = [f"{RESULTS}/tables/{name}.{ext}" for name in TABLES for ext in ("md", "csv", "tex")]
CLAIM_FILES = [f"{RESULTS}/claims.{ext}" for ext in ("md", "csv", "tex")]
PLOT_FILES = [f"{RESULTS}/plots/pareto_{d}.{ext}" for d in DATASETS for ext in ("png", "pdf", "csv")]
# measured time (workflow/rules/measure.smk): latency.json per run, Top-1 vs latency plots, realized table
LATENCY_FILES = [os.path.join(run_dir(config, *run), "latency.json") for run in RUNS]
LATENCY_PLOT_FILES = [f"{RESULTS}/plots/latency_{d}.{ext}" for d in DATASETS for ext in ("png", "pdf", "csv")]
REALIZED_TABLE = [f"{RESULTS}/tables/realized.{ext}" for ext in ("md", "csv", "tex")]
# AdaFuse's policy figures (paper Figures 3 and 4), when AdaFuse's default point runs.
POLICY_RUNS = [run for run in RUNS if run[1] == "adafuse" and run[2] == "default"]
POLICY_DATASETS = [d for d in DATASETS if any(r[0] == d for r in POLICY_RUNS)]
POLICY_PLOT_FILES = [f"{RESULTS}/plots/{name}.{ext}" for ext in ("png", "pdf") for name in
                     ["policy_distribution"] + [f"policy_blocks_{d}" for d in POLICY_DATASETS]]

# Every rule runs in this environment under `--sdm conda`; the jobs run the checkout's own vidbench
# (`python -m vidbench`: the command line a person uses as `vidbench`), with or without conda.
ENV = "../envs/vidbench.yaml"
shell.prefix(f"set -euo pipefail; export PYTHONPATH={shlex.quote(ROOT)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")

# Per train/evaluate job (cluster profiles read these); light rules get small fixed amounts.
JOB_RESOURCES = dict(config["resources"])
# a multi-process training job (train.gpus) takes one GPU per process where jobs take GPUs at all
TRAIN_RESOURCES = {**JOB_RESOURCES, "gpu": max(JOB_RESOURCES["gpu"], config["train"]["gpus"]) if JOB_RESOURCES["gpu"] else 0}
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


def spec_json(wc, input, output):
    """The resolved run spec (a params value, so a config change re-runs the affected jobs), with the paths
    of the files it reads and writes taken from the job's own inputs and outputs (where a storage plugin
    places them)."""
    spec = resolve_run(config, *run_of(wc), methods=METHODS)
    spec["data"]["prepared"] = os.path.dirname(input.prepared)
    if "pretrained" in input.keys():
        spec["model"]["pretrained"] = input.pretrained
    if spec["requires"]:
        spec["requires"] = {name: input[f"requires_{name}"] for name in spec["requires"]}
        spec["model"]["requires"] = dict(spec["requires"])
    spec["run_dir"] = os.path.dirname(output.model)
    return json.dumps(spec, sort_keys=True)


def metrics_path(run):
    return os.path.join(run_dir(config, *run), "metrics.json")


def table_output(path):
    """A table file, its CSV shown in the report (each table's notes explain the columns in its .md)."""
    name, extension = os.path.splitext(os.path.basename(path))
    if extension != ".csv":
        return path
    caption = "../report/agreement.rst" if name == "agreement" else "../report/table.rst"
    return report(path, caption=caption, category="Tables", subcategory=name, labels={"table": name})


def plot_output(path, caption, category):
    """A figure, its PNG shown in the report."""
    name, extension = os.path.splitext(os.path.basename(path))
    if extension != ".png":
        return path
    return report(path, caption=caption, category=category, labels={"figure": name})


def output_dir(wc, output):
    """The directory of a rule's first output: where its command writes."""
    return os.path.dirname(output[0])


# ---------------------------------------------------------------- data rules


def synth_params(wc):
    return config["datasets"][wc.dataset]["synthetic"]


def dataset_format(wc):
    return config["datasets"][wc.dataset]["format"]


def raw_root(wc, input):
    """A real dataset's root (outside the workflow), or the folder of the synthetic one the job reads."""
    entry = config["datasets"][wc.dataset]
    return entry["root"] if "root" in entry else os.path.dirname(input[0])


def prepare_input(wc):
    # real datasets have no input (their root is checked when the config is validated)
    return [f"{DATA}/raw/{wc.dataset}/.complete"] if "synthetic" in config["datasets"][wc.dataset] else []


def subset_args(wc):
    """minikinetics: the subset lists named in the config (else prepare looks for them in the root)."""
    subset = config["datasets"][wc.dataset].get("subset") or {}
    flags = {"classes": "--subset-classes", "train": "--subset-ids-train", "val": "--subset-ids-val"}
    return " ".join(f"{flags[key]} {shlex.quote(path)}" for key, path in subset.items())


def extract_settings(wc):
    return config["datasets"][wc.dataset]["extract"]


def shard_markers(wc):
    shards = extract_settings(wc)["shards"]
    return [f"{DATA}/frames/{wc.dataset}/.shards/shard-{i}-of-{shards}.json" for i in range(shards)]


def frames_root(wc, input):
    """The frame folders of a dataset: where its shard markers live."""
    return os.path.dirname(os.path.dirname(input[0]))


def prepared_of(wc, input):
    """The `prepare` output folder a rule reads (its first input is that folder's report.json)."""
    return os.path.dirname(input[0])


# ---------------------------------------------------------------- train and evaluate


def train_input(wc):
    """The prepared dataset, the synthetically pretrained backbone where the run starts from it, and the
    metrics.json of the runs this method `requires` (same dataset/backbone/seed; e.g. the random policy reads
    AdaFuse's policy statistics)."""
    required = requirements(config, *run_of(wc), methods=METHODS)
    pretrained = resolve_run(config, *run_of(wc), methods=METHODS)["model"].get("pretrained")
    synthetic = synthetic_pretrained(config, wc.backbone)
    return {"prepared": f"{prepared_dir(config, wc.dataset)}/report.json",
            **({"pretrained": synthetic} if pretrained == synthetic else {}),
            **{f"requires_{name}": metrics_path(run) for name, run in required.items()}}


# ---------------------------------------------------------------- report


def input_dirs(wc, input):
    """The directory of each of a rule's inputs (the run directories of metrics.json files)."""
    return [os.path.dirname(f) for f in input]


def runs_root(wc, input):
    """The runs/ folder above the metrics.json files a rule reads (<runs>/<dataset>/<method>/<point>/<backbone>/seed<n>)."""
    return str(Path(input[0]).parents[5])
