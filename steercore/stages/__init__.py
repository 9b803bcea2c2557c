"""The workflow's stages, one module per Snakemake rule: cov, vectors, generate, score, pareto, paper.

A rule calls a thin script in `workflow_scripts/`, which parses its arguments and calls one function here;
a notebook calls the same function and gets the same files. May import every layer below: steercore.core,
steercore.hub, steercore.tables, steercore.models, steercore.experiments, steercore.scorers,
steercore.testbed and steercore.figures. Nothing imports the stages.
"""
