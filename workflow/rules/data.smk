# Data: generate synthetic datasets in their official layout, then index every dataset uniformly.
# Datasets with `extract` (videos only) go on: prepare -> extract_shard (one job per shard) -> index_frames,
# and training reads the frame folders; without it the loader decodes the videos on the fly.


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


def subset_args(wc):
    """minikinetics: the subset lists named in the config (else prepare looks for them in the root)."""
    subset = config["datasets"][wc.dataset].get("subset") or {}
    flags = {"classes": "--subset-classes", "train": "--subset-ids-train", "val": "--subset-ids-val"}
    return " ".join(f"{flags[key]} {shlex.quote(path)}" for key, path in subset.items())


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
        subset=subset_args,
    log:
        f"{LOGS}/prepare/{{dataset}}.log",
    threads: 1
    resources:
        **LIGHT,
    shell:
        "vidbench prepare --format {params.fmt} --root {params.root:q} --out {params.out:q} {params.subset}"
        " > {log:q} 2>&1"


def extract_settings(wc):
    return config["datasets"][wc.dataset]["extract"]


def shard_markers(wc):
    shards = extract_settings(wc)["shards"]
    return [f"{DATA}/frames/{wc.dataset}/.shards/shard-{i}-of-{shards}.json" for i in range(shards)]


rule extract_shard:
    input:
        f"{DATA}/prepared/{{dataset}}/report.json",
    output:
        f"{DATA}/frames/{{dataset}}/.shards/shard-{{shard}}-of-{{shards}}.json",
    wildcard_constraints:
        dataset=_alternatives(EXTRACT_DATASETS),
        shard=r"\d+",
        shards=r"\d+",
    params:
        prepared=lambda wc: f"{DATA}/prepared/{wc.dataset}",
        out=lambda wc: frames_dir(config, wc.dataset),
        short_side=lambda wc: extract_settings(wc)["short_side"],
        quality=lambda wc: extract_settings(wc)["quality"],
    log:
        f"{LOGS}/extract/{{dataset}}/shard-{{shard}}-of-{{shards}}.log",
    threads: 2
    resources:
        **EXTRACT_RESOURCES,
    shell:
        "vidbench extract --prepared {params.prepared:q} --out {params.out:q} --shard {wildcards.shard}"
        " --shards {wildcards.shards} --short-side {params.short_side} --quality {params.quality} > {log:q} 2>&1"


rule index_frames:
    input:
        shard_markers,
    output:
        classes=f"{DATA}/prepared/{{dataset}}/frames/classes.txt",
        train=f"{DATA}/prepared/{{dataset}}/frames/train.csv",
        val=f"{DATA}/prepared/{{dataset}}/frames/val.csv",
        meta=f"{DATA}/prepared/{{dataset}}/frames/meta.json",
        report=f"{DATA}/prepared/{{dataset}}/frames/report.json",
    wildcard_constraints:
        dataset=_alternatives(EXTRACT_DATASETS),
    params:
        prepared=lambda wc: f"{DATA}/prepared/{wc.dataset}",
        frames=lambda wc: frames_dir(config, wc.dataset),
        out=lambda wc: prepared_dir(config, wc.dataset),
        shards=lambda wc: extract_settings(wc)["shards"],
    log:
        f"{LOGS}/extract/{{dataset}}/index.log",
    threads: 1
    resources:
        **LIGHT,
    shell:
        "vidbench extract --prepared {params.prepared:q} --out {params.frames:q} --index {params.out:q}"
        " --shards {params.shards} > {log:q} 2>&1"
