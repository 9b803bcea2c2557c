# score: one job per generate job's conditions (see generate.smk): every output scored against the source,
# the target and its own prompt set's concept (one row each, results/scores/{experiment}/{condition}/items.tsv),
# and preservation against the baseline's outputs of the same prompts and seeds (FID for images, against the
# baseline's features computed once by baseline_features; consistency for text). gather_scores builds the
# experiment's per-output, aggregated concept-score and preservation tables.


localrules:
    gather_scores,


rule baseline_features:
    input:
        manifest=lambda w: unit_manifest(generating(w.experiment), "none-0"),
    output:
        directory(res("scores/{experiment}/baseline_features")),
    params:
        python=PYTHON,
        script=script("baseline_features"),
        presets=PRESET_ARGS,
        device=DEVICE,
        generated=lambda w: res(f"generate/{generating(w.experiment)}"),
        digest=baseline_digest,
    log:
        log("baseline_features", "{experiment}"),
    benchmark:
        bench("baseline_features", "{experiment}")
    threads: THREADS
    resources:
        gpu=1,
        mem_mb=lambda w: mem_of(w.experiment),
    conda:
        "../envs/steerflow.yaml"
    shell:
        "{params.python:q} {params.script:q} --experiment {wildcards.experiment:q} {params.presets} --generated {params.generated:q}"
        " --manifest {input.manifest:q} --out {output:q} --device {params.device:q} --threads {threads}"
        " > {log:q} 2>&1"


rule score:
    input:
        unpack(score_inputs),
    output:
        per_output=res("scores/{experiment}/{condition}/items.tsv"),
        preservation=res("scores/{experiment}/{condition}/preservation.tsv"),
    params:
        python=PYTHON,
        script=script("score"),
        presets=PRESET_ARGS,
        device=DEVICE,
        pack=PACK,
        generated=lambda w: res(f"generate/{generating(w.experiment)}"),
        reference=lambda w, input: f"--reference {shlex.quote(input.reference)}" if "reference" in input.keys() else "",
        digest=score_digest,
    log:
        log("score", "{experiment}/{condition}"),
    benchmark:
        bench("score", "{experiment}/{condition}")
    threads: THREADS
    resources:
        gpu=1,
        mem_mb=lambda w: mem_of(w.experiment),
    conda:
        "../envs/steerflow.yaml"
    shell:
        "{params.python:q} {params.script:q} --experiment {wildcards.experiment:q} {params.presets} --unit {wildcards.condition:q}"
        " --pack {params.pack:q} --generated {params.generated:q} --manifests {input.manifests:q}"
        " {params.reference} --items-out {output.per_output:q} --preservation-out {output.preservation:q}"
        " --device {params.device:q} --threads {threads} > {log:q} 2>&1"


rule gather_scores:
    input:
        per_output=lambda w: score_tables(w, "items"),
        preservation=lambda w: score_tables(w, "preservation"),
    output:
        per_output=res("scores/{experiment}/items.tsv"),
        concept=report(res("scores/{experiment}/concept_scores.tsv"), caption="../report/scores.rst",
                       category="Scores", subcategory="{experiment}"),
        preservation=report(res("scores/{experiment}/preservation.tsv"), caption="../report/scores.rst",
                            category="Scores", subcategory="{experiment}"),
    params:
        python=PYTHON,
        script=script("gather"),
        presets=PRESET_ARGS,
    log:
        log("gather_scores", "{experiment}"),
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../envs/steerflow.yaml"
    shell:
        "{params.python:q} {params.script:q} scores --experiment {wildcards.experiment:q} {params.presets} --items {input.per_output:q}"
        " --preservation {input.preservation:q} --items-out {output.per_output:q} --concept-out {output.concept:q}"
        " --preservation-out {output.preservation:q} > {log:q} 2>&1"
