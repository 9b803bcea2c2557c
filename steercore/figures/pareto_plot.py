"""The Pareto figure: every method × strength, the strict frontier, the unsteered point and the goal line."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.cm
import matplotlib.colors
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from steercore.figures.pareto import ParetoResult
from steercore.figures.style import method_handles, method_style, save_figure


def pareto_figure(result: ParetoResult, title: str) -> Figure:
    """Every method × strength (marker = method, fill = strength), the strict frontier (dashed), the
    unsteered point (star) and the goal line (dotted)."""
    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.subplots()
    strengths = sorted({p.strength for p in result.points})
    norm = matplotlib.colors.Normalize(min(strengths), max(strengths) if len(strengths) > 1 else min(strengths) + 1)
    cmap = matplotlib.colormaps["viridis"]
    for method in sorted({p.method for p in result.points}):
        marker, edge, _ = method_style(method)
        pts = [p for p in result.points if p.method == method]
        ax.scatter([p.x for p in pts], [p.y for p in pts], c=[cmap(norm(p.strength)) for p in pts], marker=marker,
                   edgecolors=edge, linewidths=1.5, s=60, zorder=3)
    front = sorted((p for p in result.points if p.frontier), key=lambda p: p.x)
    ax.plot([p.x for p in front], [p.y for p in front], "--", color="0.3", lw=1, zorder=2)
    ax.scatter([result.baseline.x], [result.baseline.y], marker="*", s=160, c="black", zorder=4)
    ax.axhline(result.goal, ls=":", color="0.5", lw=1)
    handles = method_handles({p.method for p in result.points})
    handles += [Line2D([], [], marker="*", ls="", color="black", markersize=10, label="no steering"),
                Line2D([], [], ls="--", color="0.3", label="Pareto frontier"),
                Line2D([], [], ls=":", color="0.5", label="goal (unsteered, target prompts)")]
    ax.legend(handles=handles, fontsize=8, loc="best")
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="strength β")
    ax.set_xlabel(result.x_label + (" (lower is better)" if result.lower_x_better else " (higher is better)"))
    ax.set_ylabel(result.y_label)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return fig


def plot_pareto(result: ParetoResult, paths: list[Path], title: str) -> None:
    """The Pareto figure (see `pareto_figure`) written to each path."""
    save_figure(pareto_figure(result, title), paths)
