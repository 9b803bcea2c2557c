"""Tables 1–2 of the paper: an experiment's scores as a grid (conditions × test concepts), in LaTeX and drawn."""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib.figure import Figure

from steercore.experiments.preset import Condition, Experiment
from steercore.figures.pareto import ScoreTable
from steercore.figures.scores import ExperimentScores
from steercore.figures.labels import PRESERVATION_NAME, method_name, tex


@dataclass(frozen=True)
class ScoreGrid:
    """A table of an experiment's scores: column groups per test concept, one row per condition."""

    groups: list[tuple[str, list[str]]]  # (test concept, column headings), the last heading is preservation
    rows: list[tuple[str, str, list[str]]]  # (method name, β, formatted cells)
    caption: str


def score_grid(table: ScoreTable, conditions: list[Condition], source: str, target: str | None,
               test_concepts: list[str], preservation_name: str, caption: str, scale: float = 1.0,
               metric: str | None = None) -> ScoreGrid:
    """Rows: no steering, then each method × strength; per test concept: source score, target score, the
    concept's own score (unrelated concepts) and preservation (`metric`; None: the table's only one).
    Concept scores are multiplied by `scale`."""
    cols = []
    for c in test_concepts:
        sub = [(c, source, f"S({source})")] + ([(c, target, f"S({target})")] if target else [])
        if c not in (source, target):
            sub.append((c, c, f"S({c})"))
        cols.append((c, sub))
    digits = 1 if scale >= 100 else 3
    rows = []
    for cond in conditions:
        cells = []
        for c, sub in cols:
            cells += [f"{scale * table.score(cond.label, p, s):.{digits}f}" for p, s, _ in sub]
            cells.append(f"{table.preservation(cond.label, c, metric):.3f}")
        rows.append((method_name(cond.method), "--" if cond.method == "none" else f"{cond.strength:g}", cells))
    groups = [(c, [h for _, _, h in sub] + [preservation_name]) for c, sub in cols]
    return ScoreGrid(groups, rows, caption)


def grid_latex(grid: ScoreGrid) -> str:
    """A booktabs table environment for the grid."""
    spec = "ll" + "".join("r" * len(heads) for _, heads in grid.groups)
    head = [f"\\multicolumn{{{len(heads)}}}{{c}}{{{tex(c)} prompts}}" for c, heads in grid.groups]
    rules = []
    col = 3
    for _, heads in grid.groups:
        rules.append(f"\\cmidrule(lr){{{col}-{col + len(heads) - 1}}}")
        col += len(heads)
    lines = ["\\begin{table}[t]", "\\centering", "\\small", f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
             " & & " + " & ".join(head) + " \\\\", "".join(rules),
             "Method & $\\beta$ & " + " & ".join(tex(h) for _, heads in grid.groups for h in heads) + " \\\\",
             "\\midrule"]
    for i, (name, beta, cells) in enumerate(grid.rows):
        if i and name != grid.rows[i - 1][0]:
            lines.append("\\midrule")
        lines.append(f"{tex(name)} & {beta} & " + " & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", f"\\caption{{{tex(grid.caption)}}}", "\\end{table}", ""]
    return "\n".join(lines)


def experiment_grid_table(scores: ExperimentScores) -> ScoreGrid:
    """The Tables 1–2 grid of one experiment; CLIP scores ×100 as in the paper."""
    exp = scores.exp
    metric = exp.preservation_metric
    name = PRESERVATION_NAME.get(metric, metric)
    scale = 100.0 if exp.concept_scorer == "clip" else 1.0
    what = f"{exp['source']} → {exp['target']}" if exp["kind"] == "switch" else f"erasing {exp['source']}"
    caption = (f"{exp.name} ({exp['model']}, {what}, clipping {'on' if exp['clip'] else 'off'}): concept scores "
               f"S(·){' ×100' if scale != 1 else ''} ({_scorers(exp)}) on each test concept's prompts and "
               f"{name} against the unsteered outputs of the same prompts and seeds.")
    return score_grid(scores.table, exp.conditions, exp["source"], exp["target"] if exp["kind"] == "switch" else None,
                      exp.test_concepts, name, caption, scale, metric)


def _scorers(exp: Experiment) -> str:
    """The concept scorers of an experiment's table, e.g. 'clip' or 'toxicity: detoxify, others: judge'."""
    names = {c: exp.concept_scorer_for(c) for c in dict.fromkeys([exp["source"], exp["target"], *exp.test_concepts]) if c}
    if len(set(names.values())) == 1:
        return next(iter(names.values()))
    common = max(set(names.values()), key=list(names.values()).count)
    return ", ".join(f"{c}: {n}" for c, n in names.items() if n != common) + f", others: {common}"


def table_figure(grids: list[ScoreGrid]) -> Figure:
    """The grids drawn as tables, one panel each (a preview of the LaTeX for PDF/SVG and notebooks)."""
    ncols = max(2 + sum(len(h) for _, h in g.groups) for g in grids)
    heights = [0.2 * (len(g.rows) + 2) + 0.4 for g in grids]
    fig = Figure(figsize=(max(6.0, 0.62 * ncols), sum(heights)))
    axes = fig.subplots(len(grids), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, g in zip(axes, grids):
        ax.axis("off")
        head = ["", ""] + [f"{c}: {h}" if i == 0 else h for c, heads in g.groups for i, h in enumerate(heads)]
        body = [[name, beta, *cells] for name, beta, cells in g.rows]
        tab = ax.table(cellText=body, colLabels=["Method", "β"] + head[2:], loc="upper center", cellLoc="right")
        tab.auto_set_font_size(False)
        tab.set_fontsize(7)
        tab.auto_set_column_width(list(range(len(head))))
        ax.set_title(g.caption, fontsize=8, wrap=True, loc="left")
    return fig

