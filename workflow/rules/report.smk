# Analysis: every run's metrics.json -> summary.csv -> paper tables, claims and Pareto plots.
# Tables, claims and plots are tagged with report(), so that `snakemake --report report.html` gathers
# them into one self-contained page (captions in workflow/report/).

report: "../report/workflow.rst"


rule aggregate:
    input:
        metrics=[metrics_path(run) for run in RUNS],
        latency=LATENCY_FILES,  # read beside each metrics.json
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
        "python -m vidbench aggregate --out {output:q} --metrics {input.metrics:q} > {log:q} 2>&1"


rule tables:
    input:
        SUMMARY,
    output:
        [table_output(path) for path in TABLE_FILES],
    params:
        out=output_dir,
        figure=config["tables"]["figure"],
    log:
        f"{LOGS}/tables.log",
    threads: 1
    resources:
        **LIGHT,
    conda:
        ENV
    shell:
        "python -m vidbench tables --summary {input:q} --out {params.out:q} --figure {params.figure}"
        " > {log:q} 2>&1"


rule claims:
    input:
        summary=SUMMARY,
        claims="analysis/paper/claims.yaml",
    output:
        [report(path, caption="../report/claims.rst", category="Claims", labels={"file": "claims"})
         if path.endswith(".csv") else path for path in CLAIM_FILES],
    params:
        out=output_dir,
    log:
        f"{LOGS}/claims.log",
    threads: 1
    resources:
        **LIGHT,
    conda:
        ENV
    shell:
        "python -m vidbench claims --summary {input.summary:q} --claims {input.claims:q} --out {params.out:q} > {log:q} 2>&1"


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
