# pareto: concept change vs preservation for every method x strength, the strict frontier, a TSV of the
# points, a LaTeX table; and for image experiments a grid of samples (baseline vs each condition, same seeds).


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
        "{params.python} workflow_scripts/pareto.py --experiment {wildcards.experiment} --concept {input.concept}"
        " --preservation {input.preservation} --pdf {output.pdf} --svg {output.svg} --points {output.points}"
        " --table {output.table} > {log} 2>&1"


rule grid:
    input:
        manifest="results/generate/{experiment}/manifest.tsv",
    output:
        report("results/pareto/{experiment}_grid.png", caption="../report/grid.rst", category="Samples",
               labels={"experiment": "{experiment}"}),
    params:
        python=PYTHON,
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
        "{params.python} workflow_scripts/grid.py --manifest {input.manifest} --out {output} > {log} 2>&1"
