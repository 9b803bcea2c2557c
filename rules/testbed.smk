# train_testbed: retrain a testbed model (shapes-world text-to-image, its image scorer, the topics LM) from
# scratch with a fixed seed, into the folder the repository ships. The shipped folders were made by this rule;
# retrain one with `snakemake --cores 1 --force steercore/testbed/weights/t2i`.


rule train_testbed:
    output:
        directory("steercore/testbed/weights/{testbed_model}"),
    wildcard_constraints:
        testbed_model="t2i|lm|clip",
    params:
        python=PYTHON,
        script=script("train_testbed"),
    log:
        log("train_testbed", "{testbed_model}"),
    benchmark:
        bench("train_testbed", "{testbed_model}")
    threads: 1  # one thread trained fastest on a busy 2-core machine (see the README)
    resources:
        mem_mb=8000,
    conda:
        "../envs/steerflow.yaml"
    shell:
        "{params.python:q} {params.script:q} {wildcards.testbed_model:q} --out {output:q}"
        " --threads {threads} > {log:q} 2>&1"
