# Analysis: every run's metrics.json -> summary.csv -> paper tables, claims and Pareto plots.
# Tables, claims and plots are tagged with report(), so that `snakemake --report report.html` gathers
# them into one self-contained page (captions in workflow/report/).

report: "../report/workflow.rst"


def table_output(path):
    """A table file, its CSV shown in the report (each table's notes explain the columns in its .md)."""
    name = path.rsplit("/", 1)[-1].split(".")[0]
    if not path.endswith(".csv"):
        return path
    caption = "../report/agreement.rst" if name == "agreement" else "../report/table.rst"
    return report(path, caption=caption, category="Tables", subcategory=name, labels={"table": name})


def plot_output(path, caption, category):
    """A figure, its PNG shown in the report."""
    if not path.endswith(".png"):
        return path
    name = path.rsplit("/", 1)[-1][: -len(".png")]
    return report(path, caption=caption, category=category, labels={"figure": name})


rule aggregate:
    input:
        [metrics_path(run) for run in RUNS],
    output:
        SUMMARY,
    log:
        f"{LOGS}/aggregate.log",
    threads: 1
    resources:
        **LIGHT,
    conda:
        ENV
    shell:
        "python -m vidbench aggregate --out {output:q} --metrics {input:q} > {log:q} 2>&1"


rule tables:
    input:
        SUMMARY,
    output:
        [table_output(path) for path in TABLE_FILES],
    params:
        out=output_dir,
    log:
        f"{LOGS}/tables.log",
    threads: 1
    resources:
        **LIGHT,
    conda:
        ENV
    shell:
        "python -m vidbench tables --summary {input:q} --out {params.out:q} > {log:q} 2>&1"


rule claims:
    input:
        summary=SUMMARY,
        claims="analysis/paper/claims.yaml",
    output:
        [report(path, caption="../report/claims.rst", category="Claims", labels={"file": "claims"})
         if path.endswith(".csv") else path for path in CLAIM_FILES],
    params:
        out=lambda wildcards, output: output[0].rsplit("/", 1)[0],
    log:
        f"{LOGS}/claims.log",
    threads: 1
    resources:
        **LIGHT,
    shell:
        "vidbench claims --summary {input.summary:q} --claims {input.claims:q} --out {params.out:q} > {log:q} 2>&1"


rule plots:
    input:
        SUMMARY,
    output:
        [plot_output(path, "../report/pareto.rst", "Pareto plots") for path in PLOT_FILES],
    params:
        out=output_dir,
        datasets=DATASETS,
    log:
        f"{LOGS}/plots.log",
    threads: 1
    resources:
        **LIGHT,
    conda:
        ENV
    shell:
        "python -m vidbench plots --summary {input:q} --out {params.out:q} --datasets {params.datasets:q} > {log:q} 2>&1"


rule policy_plots:
    input:
        [metrics_path(run) for run in POLICY_RUNS],
    output:
        [plot_output(path, "../report/policy.rst", "Policy plots") for path in POLICY_PLOT_FILES],
    params:
        runs=runs_root,
        out=output_dir,
        datasets=POLICY_DATASETS,
    log:
        f"{LOGS}/policy_plots.log",
    threads: 1
    resources:
        **LIGHT,
    conda:
        ENV
    shell:
        "python -m vidbench policy-plots --runs {params.runs:q} --out {params.out:q} --datasets {params.datasets:q} > {log:q} 2>&1"
