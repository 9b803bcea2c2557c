"""The pareto stage: an experiment's Pareto plot, its points with frontier flags, its LaTeX table; and the
`grid` rule's sample grid of image experiments."""

from __future__ import annotations

from pathlib import Path

from steercore.core.files import write_text_atomic
from steercore.experiments.preset import Experiment
from steercore.figures.labels import experiment_title
from steercore.figures.pareto import ParetoResult, write_points
from steercore.figures.pareto_plot import plot_pareto
from steercore.figures.samples import experiment_grid
from steercore.figures.score_grid import experiment_grid_table, grid_latex
from steercore.figures.scores import ExperimentScores
from steercore.tables import CONCEPT_SCORES, PRESERVATION, read_tsv


def render_experiment_pareto(exp: Experiment, concept_tsv: Path, preservation_tsv: Path, *, figures: list[Path],
                             points: Path, table: Path) -> ParetoResult:
    """Plot, points TSV and LaTeX table of one experiment from its score tables."""
    scores = ExperimentScores(exp, read_tsv(concept_tsv, CONCEPT_SCORES), read_tsv(preservation_tsv, PRESERVATION))
    result = scores.pareto()
    plot_pareto(result, figures, experiment_title(exp))
    write_points(result, points)
    write_text_atomic(table, grid_latex(experiment_grid_table(scores)))
    return result


def render_sample_grid(manifest: Path, out: Path, columns: int = 12) -> None:
    """The grid rule: one row per condition, the same prompts and seeds in every column."""
    experiment_grid(manifest, out, columns=columns)
