# cov: the neutral mean and covariance per site (and step) from a neutral corpus. The corpus is split into
# cov.shards contiguous blocks, one job each; `cov` merges them exactly (Chan et al.), so the result does
# not depend on the number of shards.


rule cov_shard:
    output:
        temp("results/cov/{model}/shards/{covid}.{shard}of{shards}.safetensors"),
    params:
        python=PYTHON,
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
        "{params.python} workflow_scripts/cov_shard.py --experiment {params.experiment}"
        " --shard {wildcards.shard} --shards {wildcards.shards} --device {params.device} --threads {threads}"
        " --out {output} > {log} 2>&1"


rule cov:
    input:
        cov_shards,
    output:
        "results/cov/{model}/{covid}.safetensors",
    params:
        python=PYTHON,
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
        "{params.python} workflow_scripts/cov.py --out {output} {input} > {log} 2>&1"
