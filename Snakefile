# vidbench: efficient video action recognition, reproduced end to end.
#   snakemake --cores 2                        # the default config (synthetic data, every method)
#   snakemake -n                               # the whole plan
#   snakemake --profile workflow/profiles/slurm --configfile my.yaml
# A --configfile replaces default.yaml (it is not merged into it); --config KEY=VALUE overrides one key.
# DAG: synth -> prepare [-> extract_shard x N -> index_frames, for datasets with `extract`] -> train (and
#      evaluate, in the same job) -> measure (one job, every core) -> aggregate -> tables, claims, plots
#      (rules in workflow/rules/).
# Afterwards `snakemake --report report.html` gathers tables, claims and plots into one page.

configfile: "workflow/config/default.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/measure.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        SUMMARY,
        TABLE_FILES,
        CLAIM_FILES,
        PLOT_FILES,
        LATENCY_PLOT_FILES,
        REALIZED_TABLE,
        POLICY_PLOT_FILES if POLICY_RUNS else [],
    default_target: True
