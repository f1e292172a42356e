# Evaluate a trained run (accuracy, GFLOPs, params, latency, policy statistics) into metrics.json.


rule evaluate:
    input:
        f"{RESULTS}/runs/{RUN_PATTERN}/model.pt",
    output:
        f"{RESULTS}/runs/{RUN_PATTERN}/metrics.json",
    params:
        run=lambda wc: run_dir(config, *run_of(wc)),
    log:
        f"{LOGS}/evaluate/{RUN_PATTERN}.log",
    threads: JOB_THREADS
    resources:
        **JOB_RESOURCES,
    shell:
        "vidbench evaluate --run {params.run:q} > {log:q} 2>&1"
