# Analysis: every run's metrics.json -> summary.csv -> paper tables and Pareto plots.


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
    shell:
        "vidbench aggregate --out {output:q} --metrics {input:q} > {log:q} 2>&1"


rule tables:
    input:
        SUMMARY,
    output:
        TABLE_FILES,
    params:
        out=f"{RESULTS}/tables",
    log:
        f"{LOGS}/tables.log",
    threads: 1
    resources:
        **LIGHT,
    shell:
        "vidbench tables --summary {input:q} --out {params.out:q} > {log:q} 2>&1"


rule plots:
    input:
        SUMMARY,
    output:
        PLOT_FILES,
    params:
        out=f"{RESULTS}/plots",
        datasets=DATASETS,
    log:
        f"{LOGS}/plots.log",
    threads: 1
    resources:
        **LIGHT,
    shell:
        "vidbench plots --summary {input:q} --out {params.out:q} --datasets {params.datasets:q} > {log:q} 2>&1"


rule policy_plots:
    input:
        [metrics_path(run) for run in POLICY_RUNS],
    output:
        POLICY_PLOT_FILES,
    params:
        runs=f"{RESULTS}/runs",
        out=f"{RESULTS}/plots",
        datasets=[d for d in DATASETS if any(r[0] == d for r in POLICY_RUNS)],
    log:
        f"{LOGS}/policy_plots.log",
    threads: 1
    resources:
        **LIGHT,
    shell:
        "vidbench policy-plots --runs {params.runs:q} --out {params.out:q} --datasets {params.datasets:q} > {log:q} 2>&1"
