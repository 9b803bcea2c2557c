"""Figures and tables from the score tables: Pareto plots, image grids, LaTeX tables. No model needed."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from .files import atomic_path, write_text_atomic  # noqa: E402
from .pareto import POINTS_HEADER, ParetoResult, ScoreTable  # noqa: E402

STYLE = {  # marker and edge colour per method (the reference notes' conventions, plus casteer_add)
    "casteer": ("o", "tab:red", "CASteer"),
    "casteer_add": ("s", "tab:orange", "CASteer-add"),
    "leace": ("^", "tab:blue", "LEACE"),
    "midsteer": ("D", "tab:green", "MidSteer"),
}


def save_figure(fig, paths: list[Path]) -> None:
    """Write the figure to each path (format from the suffix: pdf, svg, png), atomically, then close it."""
    for path in paths:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=Path(path).suffix.lstrip("."), bbox_inches="tight")
    plt.close(fig)


def plot_pareto(result: ParetoResult, paths: list[Path], title: str) -> None:
    """Every method × strength (marker = method, fill = strength), the strict frontier (dashed), the
    unsteered point (star) and the goal line (dotted)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    strengths = sorted({p.strength for p in result.points})
    norm = matplotlib.colors.Normalize(min(strengths), max(strengths) if len(strengths) > 1 else min(strengths) + 1)
    cmap = plt.get_cmap("viridis")
    for method in sorted({p.method for p in result.points}):
        marker, edge, label = STYLE.get(method, ("x", "black", method))
        pts = [p for p in result.points if p.method == method]
        ax.scatter([p.x for p in pts], [p.y for p in pts], c=[cmap(norm(p.strength)) for p in pts], marker=marker,
                   edgecolors=edge, linewidths=1.5, s=60, zorder=3)
    front = sorted((p for p in result.points if p.frontier), key=lambda p: p.x)
    ax.plot([p.x for p in front], [p.y for p in front], "--", color="0.3", lw=1, zorder=2)
    ax.scatter([result.baseline.x], [result.baseline.y], marker="*", s=160, c="black", zorder=4)
    ax.axhline(result.goal, ls=":", color="0.5", lw=1)
    handles = [Line2D([], [], marker=STYLE[m][0], ls="", markeredgecolor=STYLE[m][1], markerfacecolor="white",
                      markeredgewidth=1.5, label=STYLE[m][2]) for m in STYLE if any(p.method == m for p in result.points)]
    handles += [Line2D([], [], marker="*", ls="", color="black", markersize=10, label="no steering"),
                Line2D([], [], ls="--", color="0.3", label="Pareto frontier"),
                Line2D([], [], ls=":", color="0.5", label="goal (unsteered, target prompts)")]
    ax.legend(handles=handles, fontsize=8, loc="best")
    sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, label="strength β")
    ax.set_xlabel(result.x_label + (" (lower is better)" if result.lower_x_better else " (higher is better)"))
    ax.set_ylabel(result.y_label)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    save_figure(fig, paths)


def write_points(result: ParetoResult, path: Path) -> None:
    rows = [POINTS_HEADER, ["none", "0", f"{result.baseline.x:.6g}", f"{result.baseline.y:.6g}", "baseline"]]
    rows += [[p.method, f"{p.strength:g}", f"{p.x:.6g}", f"{p.y:.6g}", str(p.frontier).lower()] for p in result.points]
    rows += [["goal", "", "", f"{result.goal:.6g}", ""]]
    write_text_atomic(path, "".join("\t".join(r) + "\n" for r in rows))


def latex_table(table: ScoreTable, conditions: list, source: str, target: str | None, test_concepts: list[str],
                preservation_name: str, caption: str) -> str:
    """Rows: no steering, then each method × strength; per test concept: source score, target score, the
    concept's own score (unrelated concepts) and preservation."""
    cols, head = [], []
    for c in test_concepts:
        sub = [(c, source, f"S({source})")] + ([(c, target, f"S({target})")] if target else [])
        if c not in (source, target):
            sub.append((c, c, f"S({c})"))
        cols.append((c, sub))
        head.append(f"\\multicolumn{{{len(sub) + 1}}}{{c}}{{{c} prompts}}")
    spec = "ll" + "".join("r" * (len(sub) + 1) for _, sub in cols)
    lines = ["\\begin{table}[t]", "\\centering", "\\small", f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
             " & & " + " & ".join(head) + " \\\\",
             "Method & $\\beta$ & " + " & ".join(" & ".join([h for _, _, h in sub] + [preservation_name])
                                                for _, sub in cols) + " \\\\", "\\midrule"]
    for cond in conditions:
        name = "No steering" if cond.method == "none" else STYLE.get(cond.method, ("", "", cond.method))[2]
        cells = []
        for c, sub in cols:
            cells += [f"{table.score(cond.label, p, s):.3f}" for p, s, _ in sub]
            cells.append(f"{table.preservation(cond.label, c):.3f}")
        beta = "--" if cond.method == "none" else f"{cond.strength:g}"
        lines.append(f"{name} & {beta} & " + " & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", f"\\caption{{{caption}}}", "\\end{table}", ""]
    return "\n".join(lines)


def image_grid(rows: list[tuple[str, list[Path]]], path: Path, cell: int = 64) -> None:
    """A PNG grid: one row per condition (label at the left), the same prompts and seeds in every column."""
    from PIL import Image, ImageDraw

    label_w = 110
    ncol = max(len(paths) for _, paths in rows)
    grid = Image.new("RGB", (label_w + ncol * cell, len(rows) * cell), "white")
    draw = ImageDraw.Draw(grid)
    for r, (label, paths) in enumerate(rows):
        draw.text((4, r * cell + cell // 2 - 6), label, fill="black")
        for c, p in enumerate(paths):
            grid.paste(Image.open(p).convert("RGB").resize((cell, cell), Image.NEAREST), (label_w + c * cell, r * cell))
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG")


def render_experiment_pareto(exp, concept_tsv: Path, preservation_tsv: Path, *, figures: list[Path], points: Path,
                             table: Path) -> ParetoResult:
    """The pareto stage: plot, points TSV and LaTeX table of one experiment from its score tables."""
    from .pareto import pareto, read_tsv

    concept_rows, pres_rows = read_tsv(concept_tsv), read_tsv(preservation_tsv)
    result = pareto(exp, concept_rows, pres_rows)
    what = f"{exp['source']} → {exp['target']}" if exp["kind"] == "switch" else f"erase {exp['source']}"
    plot_pareto(result, figures, f"{exp.name}: {exp['model']}, {what}")
    write_points(result, points)
    name = {"fid": "FID", "kid": "KID", "consistency": "Cons."}.get(exp.preservation, exp.preservation)
    tex = latex_table(ScoreTable(concept_rows, pres_rows), exp.conditions, exp["source"],
                      exp["target"] if exp["kind"] == "switch" else None, exp.test_concepts, name,
                      f"{exp.name}: concept scores S(·) on each prompt set and {name} against the unsteered outputs.")
    write_text_atomic(table, tex)
    return result


def experiment_grid(manifest: Path, out: Path, columns: int = 12) -> None:
    """Grid of the first `columns` outputs of each concept in turn, one row per condition."""
    from .pareto import read_tsv

    rows = read_tsv(manifest)
    by_cond: dict[str, list[dict]] = {}
    for r in rows:
        by_cond.setdefault(r["condition"], []).append(r)
    concepts = list(dict.fromkeys(r["concept"] for r in rows))
    per = max(1, columns // len(concepts))
    grid = []
    for cond, items in by_cond.items():
        picked = [r for c in concepts for r in [x for x in items if x["concept"] == c][:per]]
        grid.append((cond, [manifest.parent / r["path"] for r in picked]))
    image_grid(grid, out)
