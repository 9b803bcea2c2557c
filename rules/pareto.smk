# pareto: concept change vs preservation for every method x strength, the strict frontier, a TSV of the
# points, a LaTeX table; and for image experiments a grid of samples (baseline vs each condition, same seeds).


localrules:
    pareto,
    grid,
    pareto_intervals,


rule pareto:
    input:
        concept="results/scores/{experiment}/concept_scores.tsv",
        preservation="results/scores/{experiment}/preservation.tsv",
    output:
        pdf="results/pareto/{experiment}.pdf",
        svg=report("results/pareto/{experiment}.svg", caption="../report/pareto.rst", category="Pareto",
                   labels={"experiment": "{experiment}"}),
        points="results/pareto/{experiment}.tsv",
        table="results/pareto/{experiment}.tex",
    params:
        python=PYTHON,
        script=script("pareto"),
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
        "{params.python:q} {params.script:q} --experiment {wildcards.experiment:q} --concept {input.concept:q}"
        " --preservation {input.preservation:q} --pdf {output.pdf:q} --svg {output.svg:q} --points {output.points:q}"
        " --table {output.table:q} > {log:q} 2>&1"


rule grid:
    input:
        manifest=manifest_of,
    output:
        report("results/pareto/{experiment}_grid.png", caption="../report/grid.rst", category="Samples",
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
        per_output="results/scores/{experiment}/items.tsv",
    output:
        "results/pareto/{experiment}.intervals.tsv",
    params:
        python=PYTHON,
        script=script("pareto_intervals"),
    log:
        log("pareto_intervals", "{experiment}"),
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../envs/steerflow.yaml"
    shell:
        "{params.python:q} {params.script:q} --experiment {wildcards.experiment:q} --items {input.per_output:q}"
        " --out {output:q} > {log:q} 2>&1"
