# Time every run, masked and realized, once the evaluations are done: one job that takes every core, so
# no other job shares the cores while it times (with each run's own train.threads). Then the latency
# Pareto plots and the realized-efficiency table (FLOP and latency ratios to TSN).


rule measure:
    input:
        [metrics_path(run) for run in RUNS],
    output:
        LATENCY_FILES,
    params:
        runs=input_dirs,
    log:
        f"{LOGS}/measure.log",
    threads: workflow.cores
    resources:
        **JOB_RESOURCES,
    conda:
        ENV
    shell:
        "python -m vidbench measure --runs {params.runs:q} > {log:q} 2>&1"


rule latency_plots:
    input:
        SUMMARY,
    output:
        [plot_output(path, "../report/latency.rst", "Latency plots") for path in LATENCY_PLOT_FILES],
    params:
        out=output_dir,
        datasets=DATASETS,
    log:
        f"{LOGS}/latency_plots.log",
    threads: 1
    resources:
        **LIGHT,
    conda:
        ENV
    shell:
        "python -m vidbench plots --x latency_ms --summary {input:q} --out {params.out:q}"
        " --datasets {params.datasets:q} > {log:q} 2>&1"


rule realized_table:
    input:
        SUMMARY,
    output:
        [report(path, caption="../report/realized.rst", category="Tables", subcategory="realized",
                labels={"table": "realized"}) if path.endswith(".csv") else path for path in REALIZED_TABLE],
    params:
        out=output_dir,
    log:
        f"{LOGS}/realized_table.log",
    threads: 1
    resources:
        **LIGHT,
    conda:
        ENV
    shell:
        "python -m vidbench realized --summary {input:q} --out {params.out:q} > {log:q} 2>&1"
