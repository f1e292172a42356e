# Train one run (dataset x method x operating point x backbone x seed) from its resolved spec, then evaluate
# it (accuracy, GFLOPs, params, policy statistics) into metrics.json: `vidbench train --evaluate` reads the
# model.pt it has just written, as `vidbench evaluate --run` does, in the same process (one start of Python
# and torch a run instead of two). `vidbench evaluate --run <dir>` re-evaluates a run by hand.


rule train:
    input:
        unpack(train_input),
    output:
        model=f"{RESULTS}/runs/{RUN_PATTERN}/model.pt",
        metrics=f"{RESULTS}/runs/{RUN_PATTERN}/metrics.json",
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
        "python -m vidbench train --spec {params.spec:q} --out {params.out:q} --evaluate > {log:q} 2>&1"
