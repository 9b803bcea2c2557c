# pareto: concept change vs preservation for every method x strength, the strict frontier, a TSV of the
# points, a LaTeX table; and for image experiments a grid of samples (baseline vs each condition, same seeds).


localrules:
    pareto,
    grid,
    pareto_intervals,


rule pareto:
    input:
        concept=res("scores/{experiment}/concept_scores.tsv"),
        preservation=res("scores/{experiment}/preservation.tsv"),
    output:
        pdf=res("pareto/{experiment}.pdf"),
        svg=report(res("pareto/{experiment}.svg"), caption="../report/pareto.rst", category="Pareto",
                   labels={"experiment": "{experiment}"}),
        points=res("pareto/{experiment}.tsv"),
        table=res("pareto/{experiment}.tex"),
    params:
        python=PYTHON,
        script=script("pareto"),
        presets=PRESET_ARGS,
    log:
        log("pareto", "{experiment}"),
    benchmark:
        bench("pareto", "{experiment}")
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/steerflow.yaml"
    shell:
        "{params.python:q} {params.script:q} --experiment {wildcards.experiment:q} {params.presets} --concept {input.concept:q}"
        " --preservation {input.preservation:q} --pdf {output.pdf:q} --svg {output.svg:q} --points {output.points:q}"
        " --table {output.table:q} > {log:q} 2>&1"


rule grid:
    input:
        manifest=manifest_of,
    output:
        report(res("pareto/{experiment}_grid.png"), caption="../report/grid.rst", category="Samples",
               labels={"experiment": "{experiment}"}),
    params:
        python=PYTHON,
        script=script("grid"),
    log:
        log("grid", "{experiment}"),
    benchmark:
        bench("grid", "{experiment}")
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/steerflow.yaml"
    shell:
        "{params.python:q} {params.script:q} --manifest {input.manifest:q} --out {output:q} > {log:q} 2>&1"


rule pareto_intervals:
    input:
        per_output=res("scores/{experiment}/items.tsv"),
    output:
        res("pareto/{experiment}.intervals.tsv"),
    params:
        python=PYTHON,
        script=script("pareto_intervals"),
        presets=PRESET_ARGS,
    log:
        log("pareto_intervals", "{experiment}"),
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../envs/steerflow.yaml"
    shell:
        "{params.python:q} {params.script:q} --experiment {wildcards.experiment:q} {params.presets} --items {input.per_output:q}"
        " --out {output:q} > {log:q} 2>&1"
