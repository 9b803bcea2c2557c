# generate: every condition (baseline, method x strength) of an experiment in one job with one model load.
# Images/answers are written one file each, atomically, next to the manifest; a rerun skips the files that
# exist, so a killed job resumes (they are not declared outputs, so Snakemake does not delete them).


rule generate:
    input:
        unpack(generate_inputs),
    output:
        manifest="results/generate/{experiment}/manifest.tsv",
    params:
        python=PYTHON,
        device=DEVICE,
    log:
        log("generate", "{experiment}"),
    benchmark:
        bench("generate", "{experiment}")
    threads: THREADS
    resources:
        gpu=1,
        mem_mb=lambda w: mem_of(w.experiment),
    conda:
        "../envs/steerflow.yaml"
    shell:
        "{params.python} workflow_scripts/generate.py --experiment {wildcards.experiment} --device {params.device}"
        " --threads {threads} --manifest {output.manifest} > {log} 2>&1"
