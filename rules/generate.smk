# generate: one job per condition (`none-0`, `{method}-{strength}`), or per method (`{method}-all`, every
# strength in one batch) when the experiment packs (preset `pack`, config.yaml `pack`; the testbed packs by
# default). Each job loads the model once and writes its outputs one file each, atomically, under
# results/generate/{experiment}/{condition}/, with the digest of the settings they were made with; a rerun
# skips files of the same digest (a killed job resumes) and empties a folder made under another. The params
# digest makes Snakemake rerun exactly the jobs whose settings changed. gather_manifest lists every output.


localrules:
    gather_manifest,


rule generate:
    input:
        unpack(generate_inputs),
    output:
        manifest=res("generate/{experiment}/{condition}/manifest.tsv"),
    params:
        python=PYTHON,
        script=script("generate"),
        presets=PRESET_ARGS,
        device=DEVICE,
        pack=PACK,
        folder=res("generate/{experiment}"),
        digest=generate_digest,
    log:
        log("generate", "{experiment}/{condition}"),
    benchmark:
        bench("generate", "{experiment}/{condition}")
    threads: THREADS
    resources:
        gpu=1,
        mem_mb=lambda w: mem_of(w.experiment),
    conda:
        "../envs/steerflow.yaml"
    shell:
        "{params.python:q} {params.script:q} --experiment {wildcards.experiment:q} {params.presets} --unit {wildcards.condition:q}"
        " --pack {params.pack:q} --out-dir {params.folder:q} --manifest {output.manifest:q}"
        " --device {params.device:q} --threads {threads} > {log:q} 2>&1"


rule gather_manifest:
    input:
        unit_manifests,
    output:
        res("generate/{experiment}/manifest.tsv"),
    params:
        python=PYTHON,
        script=script("gather"),
        presets=PRESET_ARGS,
    log:
        log("gather_manifest", "{experiment}"),
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../envs/steerflow.yaml"
    shell:
        "{params.python:q} {params.script:q} manifest --experiment {wildcards.experiment:q} {params.presets} --manifests {input:q}"
        " --out {output:q} > {log:q} 2>&1"
