# vectors: the mean activation of each concept's prompts per site (and step).


rule vectors:
    output:
        res("vectors/{model}/{vecid}/{concept}.safetensors"),
    params:
        python=PYTHON,
        script=script("vectors"),
        presets=PRESET_ARGS,
        device=DEVICE,
        experiment=lambda w: vectors_owner(w),
    log:
        log("vectors", "{model}/{vecid}/{concept}"),
    benchmark:
        bench("vectors", "{model}/{vecid}/{concept}")
    threads: THREADS
    resources:
        gpu=1,
        mem_mb=lambda w: mem_of(vectors_owner(w)),
    conda:
        "../envs/steerflow.yaml"
    shell:
        "{params.python:q} {params.script:q} --experiment {params.experiment:q} {params.presets} --concept {wildcards.concept:q}"
        " --device {params.device:q} --threads {threads} --out {output:q} > {log:q} 2>&1"
