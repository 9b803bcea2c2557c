"""The covariance-size ablation figure: one Pareto trace per statistics sample count N."""

from __future__ import annotations

import matplotlib
from matplotlib.figure import Figure

from steercore.figures.scores import ExperimentScores
from steercore.figures.labels import count_label, method_name
from steercore.figures.style import method_handles, method_style


def covsize_figure(members: list[ExperimentScores]) -> Figure:
    """Preservation (x) against concept change (y, as in the Pareto figure) per statistics sample count N:
    one colour per N, one marker per method, each N's strengths joined in order and labelled with β."""
    members = sorted(members, key=lambda m: m.exp["cov"]["samples"])
    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["plasma"]
    results = [m.pareto() for m in members]
    for i, (m, res) in enumerate(zip(members, results)):
        colour = cmap(0.85 * i / max(1, len(members) - 1))
        for method in dict.fromkeys(p.method for p in res.points):
            pts = sorted((p for p in res.points if p.method == method), key=lambda p: p.strength)
            ax.plot([p.x for p in pts], [p.y for p in pts], marker=method_style(method)[0], color=colour,
                    label=f"N = {count_label(m.exp['cov']['samples'])}" if method == res.points[0].method else None)
            for p in pts:
                ax.annotate(f"{p.strength:g}", (p.x, p.y), textcoords="offset points", xytext=(4, 3), fontsize=6,
                            color=colour)
    first = results[0]
    ax.scatter([first.baseline.x], [first.baseline.y], marker="*", s=160, c="black", zorder=4, label="no steering")
    ax.axhline(first.goal, ls=":", color="0.5", lw=1, label="goal (unsteered, target prompts)")
    methods = {p.method for r in results for p in r.points}
    legend = ax.legend(fontsize=8, loc="best", title="statistics samples")
    ax.add_artist(legend)
    if len(methods) > 1:
        ax.legend(handles=method_handles(methods), fontsize=8, loc="lower right")
    ax.set_xlabel(first.x_label + (" (lower is better)" if first.lower_x_better else " (higher is better)"))
    ax.set_ylabel(first.y_label)
    exp = members[0].exp
    ax.set_title(f"covariance size: {exp['model']}, {', '.join(map(method_name, exp['methods']))}", fontsize=10)
    ax.grid(alpha=0.3)
    return fig

