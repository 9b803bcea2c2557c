# cov: the neutral mean and covariance per site (and step) from a neutral corpus. The corpus is split into
# cov.shards contiguous blocks, one job each; `cov` merges them exactly (Chan et al.), so the result does
# not depend on the number of shards.


localrules:
    cov,


rule cov_shard:
    output:
        temp(res("cov/{model}/shards/{covid}.{shard}of{shards}.safetensors")),
    params:
        python=PYTHON,
        script=script("cov_shard"),
        presets=PRESET_ARGS,
        device=DEVICE,
        experiment=lambda w: cov_owner(w),
    log:
        log("cov_shard", "{model}/{covid}.{shard}of{shards}"),
    benchmark:
        bench("cov_shard", "{model}/{covid}.{shard}of{shards}")
    threads: THREADS
    resources:
        gpu=1,
        mem_mb=lambda w: mem_of(cov_owner(w)),
    conda:
        "../envs/steerflow.yaml"
    shell:
        "{params.python:q} {params.script:q} --experiment {params.experiment:q} {params.presets}"
        " --shard {wildcards.shard:q} --shards {wildcards.shards:q} --device {params.device:q} --threads {threads}"
        " --out {output:q} > {log:q} 2>&1"


rule cov:
    input:
        cov_shards,
    output:
        res("cov/{model}/{covid}.safetensors"),
    params:
        python=PYTHON,
        script=script("cov"),
    log:
        log("cov", "{model}/{covid}"),
    benchmark:
        bench("cov", "{model}/{covid}")
    threads: 1
    resources:
        mem_mb=8000,
    conda:
        "../envs/steerflow.yaml"
    shell:
        "{params.python:q} {params.script:q} --out {output:q} {input:q} > {log:q} 2>&1"
