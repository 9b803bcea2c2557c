# vectors: the mean activation of each concept's prompts per site (and step).


rule vectors:
    output:
        "results/vectors/{model}/{vecid}/{concept}.safetensors",
    params:
        python=PYTHON,
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
        "{params.python} workflow_scripts/vectors.py --experiment {params.experiment} --concept {wildcards.concept}"
        " --device {params.device} --threads {threads} --out {output} > {log} 2>&1"
