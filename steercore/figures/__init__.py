"""Figures and tables from score tables only (no model): for the pareto and paper stages and the notebook.

`artefacts` names the paper's figures and tables and finds the experiments behind them without matplotlib
(the Snakefile reads it at parse time); `render` draws them with matplotlib's object API (no pyplot state,
no GUI backend), so the same functions run in a Snakemake job and inline in a notebook. `pareto` computes the
points and frontier; `pareto_plot`, `score_grid`, `response`, `covsize` and `samples` draw one kind each.
May import: steercore.core, steercore.tables, steercore.experiments, matplotlib (drawing modules only).
"""
