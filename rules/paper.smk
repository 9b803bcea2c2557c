# paper: the paper's figures and tables, each rendered from score tables only (no model), one job per artefact:
# `snakemake results/paper/<artefact>.pdf` (names in steercore/figures/artefacts.py and the README); `snakemake paper_all`
# builds every artefact of the experiments in config/config.yaml (the testbed by default).


localrules:
    paper,
    paper_all,


rule paper:
    input:
        paper_inputs,
    output:
        pdf=res("paper/{artefact}.pdf"),
        svg=report(res("paper/{artefact}.svg"), caption="../report/paper.rst", category="Paper",
                   labels={"artefact": "{artefact}"}),
        tex=res("paper/{artefact}.tex"),
    wildcard_constraints:
        artefact=PAPER_ARTEFACT,
    params:
        python=PYTHON,
        script=script("paper"),
        presets=PRESET_ARGS,
        out_dir=res("paper"),
    log:
        log("paper", "{artefact}"),
    benchmark:
        bench("paper", "{artefact}")
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/steerflow.yaml"
    shell:
        "{params.python:q} {params.script:q} {wildcards.artefact:q} --out-dir {params.out_dir:q} {params.presets} > {log:q} 2>&1"


rule paper_all:
    input:
        paper_targets(),
