# Data: generate synthetic datasets in their official layout, then index every dataset uniformly.


def synth_params(wc):
    return config["datasets"][wc.dataset]["synthetic"]


def raw_root(wc):
    entry = config["datasets"][wc.dataset]
    return entry["root"] if "root" in entry else f"{DATA}/raw/{wc.dataset}"


def prepare_input(wc):
    # real datasets have no input (their root is checked when the config is validated)
    return [f"{DATA}/raw/{wc.dataset}/.complete"] if "synthetic" in config["datasets"][wc.dataset] else []


rule synth:
    output:
        f"{DATA}/raw/{{dataset}}/.complete",
    params:
        fmt=lambda wc: config["datasets"][wc.dataset]["format"],
        out=lambda wc: f"{DATA}/raw/{wc.dataset}",
        synth=synth_params,
    log:
        f"{LOGS}/synth/{{dataset}}.log",
    threads: 1
    resources:
        **LIGHT,
    shell:
        "vidbench synth --format {params.fmt} --out {params.out:q}"
        " --train-per-class {params.synth[train_per_class]} --val-per-class {params.synth[val_per_class]}"
        " --seed {params.synth[seed]} > {log:q} 2>&1"


rule prepare:
    input:
        prepare_input,
    output:
        classes=f"{DATA}/prepared/{{dataset}}/classes.txt",
        train=f"{DATA}/prepared/{{dataset}}/train.csv",
        val=f"{DATA}/prepared/{{dataset}}/val.csv",
        meta=f"{DATA}/prepared/{{dataset}}/meta.json",
        report=f"{DATA}/prepared/{{dataset}}/report.json",
    params:
        fmt=lambda wc: config["datasets"][wc.dataset]["format"],
        root=raw_root,
        out=lambda wc: f"{DATA}/prepared/{wc.dataset}",
    log:
        f"{LOGS}/prepare/{{dataset}}.log",
    threads: 1
    resources:
        **LIGHT,
    shell:
        "vidbench prepare --format {params.fmt} --root {params.root:q} --out {params.out:q} > {log:q} 2>&1"
