"""Response plots (the paper's toxicity figures): the source concept's score against strength, preservation
or the target's score, per method, with 95% confidence intervals."""

from __future__ import annotations

from matplotlib.figure import Figure

from steercore.core.errors import ConfigError
from steercore.experiments.preset import Condition
from steercore.figures.artefacts import RESPONSE_VERSUS
from steercore.figures.scores import ExperimentScores, mean_ci
from steercore.figures.labels import experiment_title
from steercore.figures.style import method_style


def _curve(scores: ExperimentScores, method: str, prompts: str, scored: str) -> list[tuple[float, float, float, float]]:
    """(β, mean, CI low, CI high) of one method from β = 0 (the unsteered model) up."""
    conds = [Condition("none", 0.0)] + [c for c in scores.exp.conditions if c.method == method]
    out = []
    for c in conds:
        m, s, n = scores.summary(c.label, prompts, scored)
        lo, hi = mean_ci(m, s, n)
        out.append((c.strength, m, lo, hi))
    return out


def response_figure(scores: ExperimentScores, versus: str) -> Figure:
    """The source concept's score on source prompts (mean, 95% CI) per method against
    strength β, preservation (the Pareto x: FID or 1 − consistency on unrelated prompts), or the target concept's
    score on the same outputs (switch experiments). Toxicity → helpfulness gives the paper's toxicity plots."""
    exp = scores.exp
    src, tgt = exp["source"], exp["target"]
    if versus not in RESPONSE_VERSUS:
        raise ConfigError(f"unknown response plot '{versus}'; choose one of {', '.join(RESPONSE_VERSUS)}")
    if versus == "target" and exp["kind"] != "switch":
        raise ConfigError(f"experiment {exp.name} erases '{src}': it has no target to plot against")
    fig = Figure(figsize=(5.6, 4.2))
    ax = fig.subplots()
    base = scores.summary("none-0", src, src)
    methods = list(dict.fromkeys(exp["methods"]))
    if versus == "strength":
        for method in methods:
            marker, colour, label = method_style(method)
            curve = _curve(scores, method, src, src)
            ax.plot([c[0] for c in curve], [c[1] for c in curve], marker=marker, color=colour, label=label)
            ax.fill_between([c[0] for c in curve], [c[2] for c in curve], [c[3] for c in curve], color=colour,
                            alpha=0.15, lw=0)
        ax.set_xlabel("strength β (0 = no steering)")
    else:
        if versus == "preservation":
            res = scores.pareto("unrelated_preservation")
            x_of = {(p.method, p.strength): p.x for p in [res.baseline, *res.points]}
            xlabel = res.x_label + " (lower is better)"
        else:
            x_of = {(c.method, c.strength): scores.summary(c.label, src, tgt)[0] for c in exp.conditions}
            xlabel = f"S({tgt}) on {src} prompts ({exp.concept_scorer_for(tgt)}; higher is better)"
        for method in methods:
            marker, colour, label = method_style(method)
            curve = _curve(scores, method, src, src)
            xs = [x_of[("none" if b == 0 and i == 0 else method, b)] for i, (b, *_) in enumerate(curve)]
            ys = [c[1] for c in curve]
            err = [[c[1] - c[2] for c in curve], [c[3] - c[1] for c in curve]]
            ax.errorbar(xs, ys, yerr=err, marker=marker, color=colour, label=label, capsize=2, lw=1)
            for x, (b, y, *_) in zip(xs[1:], curve[1:]):
                ax.annotate(f"{b:g}", (x, y), textcoords="offset points", xytext=(4, 3), fontsize=6, color=colour)
        ax.scatter([x_of[("none", 0.0)]], [base[0]], marker="*", s=160, c="black", zorder=4, label="no steering")
        ax.set_xlabel(xlabel)
    ax.set_ylabel(f"S({src}) on {src} prompts ({exp.concept_scorer_for(src)}), 95% CI")
    ax.set_title(experiment_title(exp), fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return fig

