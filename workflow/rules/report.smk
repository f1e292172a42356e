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
    conda:
        ENV
    shell:
        "python -m vidbench aggregate --out {output:q} --metrics {input:q} > {log:q} 2>&1"


rule tables:
    input:
        SUMMARY,
    output:
        TABLE_FILES,
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


rule plots:
    input:
        SUMMARY,
    output:
        PLOT_FILES,
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
        POLICY_PLOT_FILES,
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
