"""Draw a paper artefact (see steercore.figures.artefacts for the names): its figure, its LaTeX, its files."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from steercore.core.files import write_text_atomic
from steercore.experiments.preset import ROOT, results_dir
from steercore.figures.artefacts import ARTEFACT_SUFFIXES, Artefact
from steercore.figures.covsize import covsize_figure
from steercore.figures.labels import experiment_title, tex
from steercore.figures.leaderboard import leaderboard_grid
from steercore.figures.pareto_plot import pareto_figure
from steercore.figures.response import response_figure
from steercore.figures.score_grid import experiment_grid_table, grid_latex, table_figure
from steercore.figures.scores import has_scores, load_scores
from steercore.figures.style import save_figure


def draw(art: Artefact, root: Path = ROOT, *, require_all: bool = True) -> Figure:
    """The figure (a table is drawn as a table). With require_all=False a covariance-size ablation shows
    the members that have scores (a notebook reading whatever results exist)."""
    exps = art.experiments(root)
    if art.kind == "leaderboard":
        return table_figure([leaderboard_grid(exps, root)])
    if not require_all:
        exps = [e for e in exps if has_scores(e.name, root)] or exps
    scores = [load_scores(e, root) for e in exps]
    if art.kind == "table":
        return table_figure([experiment_grid_table(s) for s in scores])
    if art.kind == "pareto":
        return pareto_figure(scores[0].pareto(art.option), experiment_title(scores[0].exp))
    if art.kind == "response":
        return response_figure(scores[0], art.option)
    return covsize_figure(scores)


def latex(art: Artefact, root: Path = ROOT) -> str:
    """A table: the booktabs tables, one per experiment. A figure: a LaTeX figure include with a caption."""
    if art.kind == "table":
        return "\n".join(grid_latex(experiment_grid_table(load_scores(e, root))) for e in art.experiments(root))
    if art.kind == "leaderboard":
        return grid_latex(leaderboard_grid(art.experiments(root), root))
    return ("\\begin{figure}[t]\n\\centering\n"
            f"\\includegraphics[width=\\linewidth]{{results/paper/{art.name}.pdf}}\n"
            f"\\caption{{{tex(art.caption(root))}}}\n\\label{{fig:{art.name}}}\n\\end{{figure}}\n")


def artefact_figure(name: str, root: Path = ROOT, *, require_all: bool = False) -> Figure:
    """The figure of artefact `name` from whatever scores exist (for notebooks)."""
    return draw(Artefact.parse(name), root, require_all=require_all)


def render_artefact(name: str, out_dir: Path | None = None, root: Path = ROOT) -> list[Path]:
    """Write {out_dir}/{name}.pdf, .svg and .tex (default out_dir: results/paper); return the paths."""
    art = Artefact.parse(name)
    out_dir = results_dir(root) / "paper" if out_dir is None else Path(out_dir)
    paths = [out_dir / f"{name}{s}" for s in ARTEFACT_SUFFIXES]
    save_figure(draw(art, root), paths[:2])
    write_text_atomic(paths[2], latex(art, root))
    return paths
