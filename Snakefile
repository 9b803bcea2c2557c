# Steerflow: cov -> vectors -> generate -> score -> pareto over models x concepts x methods x strengths.
# `snakemake --cores 2` runs the testbed experiments listed in config/config.yaml; any experiment's figure is
# `snakemake --cores 1 results/pareto/<experiment>.pdf`. See README.md.
from snakemake.utils import min_version

from steercore.experiments.workflow_config import check_config

min_version("9.0")


configfile: "config/config.yaml"


check_config(config)


include: "rules/common.smk"
include: "rules/testbed.smk"
include: "rules/cov.smk"
include: "rules/vectors.smk"
include: "rules/generate.smk"
include: "rules/score.smk"
include: "rules/pareto.smk"
include: "rules/paper.smk"


report: "report/workflow.rst"


onstart:
    start_warm_server()


onsuccess:
    stop_warm_server()


onerror:
    stop_warm_server()


rule all:
    input:
        default_targets(),
    default_target: True
