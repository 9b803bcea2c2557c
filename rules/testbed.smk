# train_testbed: retrain the testbed models (shapes-world text-to-image, its image scorer, the topics LM)
# from scratch with a fixed seed. Writes to results/testbed/; copy a folder over steercore/testbed/weights/
# to ship it (the default run uses the shipped weights).


rule train_testbed:
    output:
        directory("results/testbed/{testbed_model}"),
    wildcard_constraints:
        testbed_model="t2i|lm|clip",
    params:
        python=PYTHON,
    log:
        log("train_testbed", "{testbed_model}"),
    benchmark:
        bench("train_testbed", "{testbed_model}")
    threads: THREADS
    resources:
        mem_mb=8000,
    conda:
        "../envs/steerflow.yaml"
    shell:
        "{params.python} workflow_scripts/train_testbed.py {wildcards.testbed_model} --out {output} --threads {threads}"
        " > {log} 2>&1"
