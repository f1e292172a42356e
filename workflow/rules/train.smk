# Train one run (dataset x method x operating point x backbone x seed) from its resolved spec.


rule train:
    input:
        unpack(train_input),
    output:
        f"{RESULTS}/runs/{RUN_PATTERN}/model.pt",
    params:
        spec=spec_json,
        out=output_dir,
    log:
        f"{LOGS}/train/{RUN_PATTERN}.log",
    threads: JOB_THREADS
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        "python -m vidbench train --spec {params.spec:q} --out {params.out:q} > {log:q} 2>&1"
