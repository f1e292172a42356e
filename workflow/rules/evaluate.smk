# Evaluate a trained run (accuracy, GFLOPs, params, latency, policy statistics) into metrics.json.


rule evaluate:
    input:
        f"{RESULTS}/runs/{RUN_PATTERN}/model.pt",
    output:
        f"{RESULTS}/runs/{RUN_PATTERN}/metrics.json",
    params:
        run=output_dir,
    log:
        f"{LOGS}/evaluate/{RUN_PATTERN}.log",
    threads: JOB_THREADS
    resources:
        **JOB_RESOURCES,
    conda:
        ENV
    shell:
        "python -m vidbench evaluate --run {params.run:q} > {log:q} 2>&1"
