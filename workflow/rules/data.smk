# Data: generate synthetic datasets in their official layout, then index every dataset uniformly.
# Datasets with `extract` (videos only) go on: prepare -> extract_shard (one job per shard) -> index_frames,
# and training reads the frame folders; without it the loader decodes the videos on the fly.


rule synth:
    output:
        f"{DATA}/raw/{{dataset}}/.complete",
    params:
        fmt=dataset_format,
        out=output_dir,
        synth=synth_params,
    log:
        f"{LOGS}/synth/{{dataset}}.log",
    threads: 1
    resources:
        **LIGHT,
    conda:
        ENV
    shell:
        "python -m vidbench synth --format {params.fmt} --out {params.out:q}"
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
        fmt=dataset_format,
        root=raw_root,
        out=output_dir,
        subset=subset_args,
    log:
        f"{LOGS}/prepare/{{dataset}}.log",
    threads: 1
    resources:
        **LIGHT,
    conda:
        ENV
    shell:
        "python -m vidbench prepare --format {params.fmt} --root {params.root:q} --out {params.out:q} {params.subset}"
        " > {log:q} 2>&1"


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
        prepared=prepared_of,
        out=lambda wc, output: os.path.dirname(os.path.dirname(output[0])),
        short_side=lambda wc: extract_settings(wc)["short_side"],
        quality=lambda wc: extract_settings(wc)["quality"],
    log:
        f"{LOGS}/extract/{{dataset}}/shard-{{shard}}-of-{{shards}}.log",
    threads: 2
    resources:
        **EXTRACT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m vidbench extract --prepared {params.prepared:q} --out {params.out:q} --shard {wildcards.shard}"
        " --shards {wildcards.shards} --short-side {params.short_side} --quality {params.quality} > {log:q} 2>&1"


rule index_frames:
    input:
        report=f"{DATA}/prepared/{{dataset}}/report.json",
        shards=shard_markers,
    output:
        classes=f"{DATA}/prepared/{{dataset}}/frames/classes.txt",
        train=f"{DATA}/prepared/{{dataset}}/frames/train.csv",
        val=f"{DATA}/prepared/{{dataset}}/frames/val.csv",
        meta=f"{DATA}/prepared/{{dataset}}/frames/meta.json",
        report=f"{DATA}/prepared/{{dataset}}/frames/report.json",
    wildcard_constraints:
        dataset=_alternatives(EXTRACT_DATASETS),
    params:
        prepared=prepared_of,
        frames=lambda wc, input: os.path.dirname(os.path.dirname(input.shards[0])),
        out=output_dir,
        shards=lambda wc, input: len(input.shards),
    log:
        f"{LOGS}/extract/{{dataset}}/index.log",
    threads: 1
    resources:
        **LIGHT,
    conda:
        ENV
    shell:
        "python -m vidbench extract --prepared {params.prepared:q} --out {params.frames:q} --index {params.out:q}"
        " --shards {params.shards} > {log:q} 2>&1"


# The synthetic suite's stand-in for ImageNet weights, for runs whose model.pretrained is "synthetic".
rule pretrain:
    output:
        f"{DATA}/pretrained/{{backbone}}-synthetic.pth",
    params:
        pretrain=config["pretrain"],
        input_size=config["data"]["input_size"],
    log:
        f"{LOGS}/pretrain/{{backbone}}.log",
    threads: workflow.cores  # every training waits for it
    resources:
        **JOB_RESOURCES,
    conda:
        ENV
    shell:
        "python -m vidbench pretrain --backbone {wildcards.backbone} --out {output:q}"
        " --images {params.pretrain[images]} --steps {params.pretrain[steps]}"
        " --batch-size {params.pretrain[batch_size]} --lr {params.pretrain[lr]} --seed {params.pretrain[seed]}"
        " --input-size {params.input_size} --threads {threads} > {log:q} 2>&1"
