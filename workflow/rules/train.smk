# Train one run (dataset x method x operating point x backbone x seed) from its resolved spec.


def train_input(wc):
    """The prepared dataset, plus the metrics.json of the runs this method `requires`
    (same dataset/backbone/seed; e.g. the random policy reads AdaFuse's policy statistics)."""
    required = requirements(config, *run_of(wc), methods=METHODS)
    return {"prepared": f"{prepared_dir(config, wc.dataset)}/report.json",
            **{f"requires_{name}": metrics_path(run) for name, run in required.items()}}


rule train:
    input:
        unpack(train_input),
    output:
        f"{RESULTS}/runs/{RUN_PATTERN}/model.pt",
    params:
        spec=spec_json,
        out=lambda wc: run_dir(config, *run_of(wc)),
    log:
        f"{LOGS}/train/{RUN_PATTERN}.log",
    threads: JOB_THREADS
    resources:
        **JOB_RESOURCES,
    shell:
        "vidbench train --spec {params.spec:q} --out {params.out:q} > {log:q} 2>&1"
