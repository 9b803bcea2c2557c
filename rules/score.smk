# score: concept scores of every condition on every prompt set, and preservation against the unsteered
# outputs of the same prompts and seeds (FID for images, consistency for text).


rule score:
    input:
        manifest=manifest_of,
    output:
        concept=report("results/scores/{experiment}/concept_scores.tsv", caption="../report/scores.rst",
                       category="Scores", subcategory="{experiment}"),
        preservation=report("results/scores/{experiment}/preservation.tsv", caption="../report/scores.rst",
                            category="Scores", subcategory="{experiment}"),
    params:
        python=PYTHON,
        device=DEVICE,
    log:
        log("score", "{experiment}"),
    benchmark:
        bench("score", "{experiment}")
    threads: THREADS
    resources:
        gpu=1,
        mem_mb=lambda w: mem_of(w.experiment),
    conda:
        "../envs/steerflow.yaml"
    shell:
        "{params.python} workflow_scripts/score.py --experiment {wildcards.experiment} --manifest {input.manifest}"
        " --device {params.device} --threads {threads} --concept-out {output.concept}"
        " --preservation-out {output.preservation} > {log} 2>&1"
