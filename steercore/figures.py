"""Figures and tables from the score tables, for the pareto stage, the paper rule and the notebook. No model needed.

Everything reads `results/scores/{experiment}/{concept_scores,preservation}.tsv` (or rows already read) and
draws with matplotlib's object API (no pyplot state, no GUI backend), so the same functions run in a Snakemake
job and show inline in a notebook. A paper *artefact* is one figure or table; its name says what it shows and
which experiments feed it (experiment names never contain '-' or '+'):

    table-{exp}[+{exp2}...]            Tables 1–2 style: no steering, then method × strength; per test concept
                                       the source, target and own scores and preservation (one block per exp)
    pareto-{exp}-{x}                   Pareto figure; x = unrelated_preservation (FID or 1 − consistency) or
                                       unrelated_score (the unrelated concepts' own scores)
    response-{exp}-{versus}            the source concept's score on source prompts (95% CI) against strength,
                                       preservation (x of the Pareto figure) or the target's score
    covsize-{family}                   covariance-size ablation over the presets {family}_n{N} (N = cov.samples)

`render_artefact(name)` writes `results/paper/{name}.pdf`, `.svg` and `.tex` (the table itself, or a LaTeX
figure include with a caption); `artefact_figure(name)` returns the figure for a notebook.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib
import matplotlib.cm
import matplotlib.colors
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .errors import ConfigError
from .experiment import ROOT, Condition, Experiment, list_experiments, load_experiment
from .files import atomic_path, write_text_atomic
from .pareto import POINTS_HEADER, ParetoResult, ScoreTable, pareto, read_tsv

STYLE = {  # marker, edge colour and display name per method (the reference notes' conventions, plus casteer_add)
    "casteer": ("o", "tab:red", "CASteer"),
    "casteer_add": ("s", "tab:orange", "CASteer-add"),
    "leace": ("^", "tab:blue", "LEACE"),
    "midsteer": ("D", "tab:green", "MidSteer"),
}
PRESERVATION_NAME = {"fid": "FID", "kid": "KID", "consistency": "Cons.", "bleu": "BLEU", "bert_precision": "BERT-P",
                     "bert_recall": "BERT-R", "bert_f1": "BERT-F1"}
PARETO_X = ("unrelated_preservation", "unrelated_score")
RESPONSE_VERSUS = ("strength", "preservation", "target")
ARTEFACT_SUFFIXES = (".pdf", ".svg", ".tex")
# Written into the files instead of the date, so that a rerun on the same scores gives the same bytes.
_METADATA = {"pdf": {"CreationDate": None, "ModDate": None}, "svg": {"Date": None}, "png": {}}


def method_name(method: str) -> str:
    return "No steering" if method == "none" else STYLE.get(method, ("", "", method))[2]


def _method_style(method: str) -> tuple[str, str, str]:
    return STYLE.get(method, ("x", "black", method))


def save_figure(fig: Figure, paths: list[Path]) -> None:
    """Write the figure to each path (format from the suffix: pdf, svg, png), atomically and reproducibly."""
    for path in paths:
        fmt = Path(path).suffix.lstrip(".")
        with matplotlib.rc_context({"svg.hashsalt": "steerflow"}), atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, bbox_inches="tight", metadata=_METADATA.get(fmt, {}),
                        dpi=150 if fmt == "png" else "figure")


# ---------------------------------------------------------------- score tables

@dataclass(frozen=True)
class ExperimentScores:
    """An experiment and the rows of its two score tables."""

    exp: Experiment
    concept_rows: list[dict]
    preservation_rows: list[dict]

    @property
    def table(self) -> ScoreTable:
        return ScoreTable(self.concept_rows, self.preservation_rows)

    def summary(self, cond: str, prompts: str, scored: str) -> tuple[float, float, int]:
        """(mean, population std, n) of the concept scores of condition `cond` on `prompts` against `scored`."""
        for r in self.concept_rows:
            if (r["condition"], r["prompts"], r["scored"]) == (cond, prompts, scored):
                return float(r["mean"]), float(r["std"]), int(r["n"])
        raise ConfigError(f"{self.exp.name}: no concept score for condition {cond}, prompts '{prompts}', scored "
                          f"against '{scored}'; rerun the score stage")

    def pareto(self, x: str | None = None) -> ParetoResult:
        """The Pareto points with the experiment's x axis, or with `x` (one of PARETO_X) instead."""
        exp = self.exp if x is None else with_pareto_x(self.exp, x)
        return pareto(exp, self.concept_rows, self.preservation_rows)


def score_paths(name: str, root: Path = ROOT) -> tuple[Path, Path]:
    """The concept-score and preservation tables of experiment `name` (results/scores/{name}/)."""
    d = Path(root) / "results" / "scores" / name
    return d / "concept_scores.tsv", d / "preservation.tsv"


def has_scores(name: str, root: Path = ROOT) -> bool:
    return all(p.is_file() for p in score_paths(name, root))


def load_scores(exp: Experiment | str, root: Path = ROOT) -> ExperimentScores:
    """The score tables of an experiment (by preset name or Experiment) from results/scores/."""
    exp = exp if isinstance(exp, Experiment) else load_experiment(exp, root)
    concept, pres = score_paths(exp.name, root)
    if not (concept.is_file() and pres.is_file()):
        raise ConfigError(f"no scores for experiment '{exp.name}' ({concept.parent}); "
                          f"run `snakemake results/scores/{exp.name}/concept_scores.tsv` first")
    return ExperimentScores(exp, read_tsv(concept), read_tsv(pres))


def with_pareto_x(exp: Experiment, x: str) -> Experiment:
    if x not in PARETO_X:
        raise ConfigError(f"unknown Pareto x axis '{x}'; choose one of {', '.join(PARETO_X)}")
    return replace(exp, cfg={**exp.cfg, "pareto": {**exp.cfg["pareto"], "x": x}})


def mean_ci(mean: float, std: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of a mean, from the score table's mean, population std (ddof 0) and n.

    The sample std is std·√(n/(n−1)), so the half-width t·s/√n is t·std/√(n−1). Outputs of the same prompt
    under different seeds are treated as independent, so the interval is, if anything, too narrow.
    """
    if n < 2:
        return mean, mean
    from scipy.stats import t  # scipy comes with clean-fid

    half = float(t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n - 1)
    return mean - half, mean + half


# ---------------------------------------------------------------- Pareto figures (pareto stage and paper)

def pareto_figure(result: ParetoResult, title: str) -> Figure:
    """Every method × strength (marker = method, fill = strength), the strict frontier (dashed), the
    unsteered point (star) and the goal line (dotted)."""
    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.subplots()
    strengths = sorted({p.strength for p in result.points})
    norm = matplotlib.colors.Normalize(min(strengths), max(strengths) if len(strengths) > 1 else min(strengths) + 1)
    cmap = matplotlib.colormaps["viridis"]
    for method in sorted({p.method for p in result.points}):
        marker, edge, _ = _method_style(method)
        pts = [p for p in result.points if p.method == method]
        ax.scatter([p.x for p in pts], [p.y for p in pts], c=[cmap(norm(p.strength)) for p in pts], marker=marker,
                   edgecolors=edge, linewidths=1.5, s=60, zorder=3)
    front = sorted((p for p in result.points if p.frontier), key=lambda p: p.x)
    ax.plot([p.x for p in front], [p.y for p in front], "--", color="0.3", lw=1, zorder=2)
    ax.scatter([result.baseline.x], [result.baseline.y], marker="*", s=160, c="black", zorder=4)
    ax.axhline(result.goal, ls=":", color="0.5", lw=1)
    handles = _method_handles({p.method for p in result.points})
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


def _method_handles(methods) -> list[Line2D]:
    return [Line2D([], [], marker=STYLE[m][0], ls="", markeredgecolor=STYLE[m][1], markerfacecolor="white",
                   markeredgewidth=1.5, label=STYLE[m][2]) for m in STYLE if m in methods]


def plot_pareto(result: ParetoResult, paths: list[Path], title: str) -> None:
    """The Pareto figure (see `pareto_figure`) written to each path."""
    save_figure(pareto_figure(result, title), paths)


def write_points(result: ParetoResult, path: Path) -> None:
    rows = [POINTS_HEADER, ["none", "0", f"{result.baseline.x:.6g}", f"{result.baseline.y:.6g}", "baseline"]]
    rows += [[p.method, f"{p.strength:g}", f"{p.x:.6g}", f"{p.y:.6g}", str(p.frontier).lower()] for p in result.points]
    rows += [["goal", "", "", f"{result.goal:.6g}", ""]]
    write_text_atomic(path, "".join("\t".join(r) + "\n" for r in rows))


def experiment_title(exp: Experiment) -> str:
    what = f"{exp['source']} → {exp['target']}" if exp["kind"] == "switch" else f"erase {exp['source']}"
    clip = ", clipping" if exp["clip"] else ""
    return f"{exp.name}: {exp['model']}, {what}{clip}"


# ---------------------------------------------------------------- Tables 1–2

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
    head = [f"\\multicolumn{{{len(heads)}}}{{c}}{{{_tex(c)} prompts}}" for c, heads in grid.groups]
    rules = []
    col = 3
    for _, heads in grid.groups:
        rules.append(f"\\cmidrule(lr){{{col}-{col + len(heads) - 1}}}")
        col += len(heads)
    lines = ["\\begin{table}[t]", "\\centering", "\\small", f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
             " & & " + " & ".join(head) + " \\\\", "".join(rules),
             "Method & $\\beta$ & " + " & ".join(_tex(h) for _, heads in grid.groups for h in heads) + " \\\\",
             "\\midrule"]
    for i, (name, beta, cells) in enumerate(grid.rows):
        if i and name != grid.rows[i - 1][0]:
            lines.append("\\midrule")
        lines.append(f"{name} & {beta} & " + " & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", f"\\caption{{{_tex(grid.caption)}}}", "\\end{table}", ""]
    return "\n".join(lines)


def _tex(text: str) -> str:
    return text.replace("_", "\\_").replace("%", "\\%").replace("&", "\\&").replace("→", "$\\to$") \
               .replace("×", "$\\times$").replace("−", "$-$")


def latex_table(table: ScoreTable, conditions: list, source: str, target: str | None, test_concepts: list[str],
                preservation_name: str, caption: str, scale: float = 1.0, metric: str | None = None) -> str:
    """The LaTeX of `score_grid(...)`."""
    return grid_latex(score_grid(table, conditions, source, target, test_concepts, preservation_name, caption, scale,
                                 metric))


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


# ---------------------------------------------------------------- response plots (toxicity/helpfulness style)

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
            marker, colour, label = _method_style(method)
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
            marker, colour, label = _method_style(method)
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


# ---------------------------------------------------------------- covariance-size ablation

def covsize_family(family: str, root: Path = ROOT) -> list[Experiment]:
    """The presets {family}_n{N} of a covariance-size ablation, by increasing cov.samples."""
    pattern = re.compile(re.escape(family) + r"_n\d+")
    members = [load_experiment(n, root) for n in list_experiments(root) if pattern.fullmatch(n)]
    if not members:
        raise ConfigError(f"no covariance-size presets '{family}_n<N>' in config/experiments/; "
                          f"families: {', '.join(covsize_families(root)) or 'none'}")
    return sorted(members, key=lambda e: e["cov"]["samples"])


def covsize_families(root: Path = ROOT) -> list[str]:
    return sorted({m.group(1) for n in list_experiments(root) if (m := re.fullmatch(r"(\w+?)_n\d+", n))})


def _count(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


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
            ax.plot([p.x for p in pts], [p.y for p in pts], marker=_method_style(method)[0], color=colour,
                    label=f"N = {_count(m.exp['cov']['samples'])}" if method == res.points[0].method else None)
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
        ax.legend(handles=_method_handles(methods), fontsize=8, loc="lower right")
    ax.set_xlabel(first.x_label + (" (lower is better)" if first.lower_x_better else " (higher is better)"))
    ax.set_ylabel(first.y_label)
    exp = members[0].exp
    ax.set_title(f"covariance size: {exp['model']}, {', '.join(map(method_name, exp['methods']))}", fontsize=10)
    ax.grid(alpha=0.3)
    return fig


# ---------------------------------------------------------------- artefacts

_NAME = r"[A-Za-z0-9_]+"
ARTEFACT_PATTERN = (rf"table-{_NAME}(\+{_NAME})*|pareto-{_NAME}-({'|'.join(PARETO_X)})|"
                    rf"response-{_NAME}-({'|'.join(RESPONSE_VERSUS)})|covsize-{_NAME}")


@dataclass(frozen=True)
class Artefact:
    """A paper figure or table, parsed from its name (see the module docstring)."""

    name: str
    kind: str  # table | pareto | response | covsize
    subjects: tuple[str, ...]  # experiments (table: one or more; pareto, response: one) or the covsize family
    option: str | None = None  # the Pareto x axis or the response plot's x

    @classmethod
    def parse(cls, name: str) -> "Artefact":
        if not re.fullmatch(ARTEFACT_PATTERN, name):
            raise ConfigError(f"'{name}' is not a paper artefact; names are table-<exp>[+<exp>...], "
                              f"pareto-<exp>-<{'|'.join(PARETO_X)}>, response-<exp>-<{'|'.join(RESPONSE_VERSUS)}>, "
                              "covsize-<family>")
        kind, _, rest = name.partition("-")
        if kind == "table":
            return cls(name, kind, tuple(rest.split("+")))
        if kind == "covsize":
            return cls(name, kind, (rest,))
        subject, _, option = rest.partition("-")
        return cls(name, kind, (subject,), option)

    def experiments(self, root: Path = ROOT) -> list[Experiment]:
        """The experiments whose score tables feed this artefact (checked: it applies to them)."""
        if self.kind == "covsize":
            return covsize_family(self.subjects[0], root)
        exps = [load_experiment(s, root) for s in self.subjects]
        if self.kind == "response" and self.option == "target" and exps[0]["kind"] != "switch":
            raise ConfigError(f"{self.name}: experiment {exps[0].name} erases a concept; it has no target score "
                              "to plot against (use response-<exp>-strength or -preservation)")
        return exps

    def figure(self, root: Path = ROOT, *, require_all: bool = True) -> Figure:
        """The figure (a table is drawn as a table). With require_all=False a covariance-size ablation shows
        the members that have scores (a notebook reading whatever results exist)."""
        exps = self.experiments(root)
        if not require_all:
            exps = [e for e in exps if has_scores(e.name, root)] or exps
        scores = [load_scores(e, root) for e in exps]
        if self.kind == "table":
            return table_figure([experiment_grid_table(s) for s in scores])
        if self.kind == "pareto":
            return pareto_figure(scores[0].pareto(self.option), experiment_title(scores[0].exp))
        if self.kind == "response":
            return response_figure(scores[0], self.option)
        return covsize_figure(scores)

    def latex(self, root: Path = ROOT) -> str:
        """A table: the booktabs tables, one per experiment. A figure: a LaTeX figure include with a caption."""
        if self.kind == "table":
            return "\n".join(grid_latex(experiment_grid_table(load_scores(e, root))) for e in self.experiments(root))
        return ("\\begin{figure}[t]\n\\centering\n"
                f"\\includegraphics[width=\\linewidth]{{results/paper/{self.name}.pdf}}\n"
                f"\\caption{{{_tex(self.caption(root))}}}\n\\label{{fig:{self.name}}}\n\\end{{figure}}\n")

    def caption(self, root: Path = ROOT) -> str:
        exps = self.experiments(root)
        exp = exps[0]
        if self.kind == "table":
            return "Concept scores and preservation of " + ", ".join(e.name for e in exps) + "."
        if self.kind == "pareto":
            res_x = "preservation on unrelated prompts" if self.option == "unrelated_preservation" else \
                "the unrelated concepts' own scores"
            return (f"{experiment_title(exp)}. Concept change against {res_x}, every method and strength, the "
                    "strict Pareto frontier (dashed), no steering (star) and the goal (dotted).")
        if self.kind == "response":
            x = {"strength": "strength", "preservation": "preservation on unrelated prompts",
                 "target": f"the {exp['target']} score"}[self.option]
            return f"{experiment_title(exp)}. The {exp['source']} score (mean, 95% CI) against {x}."
        sizes = ", ".join(_count(e["cov"]["samples"]) for e in exps)
        return (f"Covariance-size ablation ({exp['model']}, N = {sizes} statistics samples): preservation against "
                "concept change for each N and strength.")


def artefact_figure(name: str, root: Path = ROOT, *, require_all: bool = False) -> Figure:
    """The figure of artefact `name` from whatever scores exist (for notebooks)."""
    return Artefact.parse(name).figure(root, require_all=require_all)


def render_artefact(name: str, out_dir: Path | None = None, root: Path = ROOT) -> list[Path]:
    """Write {out_dir}/{name}.pdf, .svg and .tex (default out_dir: results/paper); return the paths."""
    art = Artefact.parse(name)
    out_dir = Path(root) / "results" / "paper" if out_dir is None else Path(out_dir)
    paths = [out_dir / f"{name}{s}" for s in ARTEFACT_SUFFIXES]
    save_figure(art.figure(root), paths[:2])
    write_text_atomic(paths[2], art.latex(root))
    return paths


def clip_twin(exp: Experiment, root: Path = ROOT) -> Experiment | None:
    """The preset identical to `exp` except for `clip` (and its description), if there is one."""
    def key(cfg):
        return {k: v for k, v in cfg.items() if k not in ("clip", "description")}

    for name in list_experiments(root):
        if name != exp.name:
            other = load_experiment(name, root)
            if other["clip"] != exp["clip"] and key(other.cfg) == key(exp.cfg):
                return other
    return None


def experiment_artefacts(exp: Experiment, root: Path = ROOT, *, twin: Experiment | None | bool = True) -> list[str]:
    """Every artefact of one experiment: its table (clipping off, then on, with its clip twin: by default the
    twin preset if there is one), both Pareto figures and the response plots."""
    if twin is True:
        twin = clip_twin(exp, root)
    table = ["table-" + "+".join(e.name for e in sorted([exp, twin] if twin else [exp], key=lambda e: e["clip"]))]
    versus = [v for v in RESPONSE_VERSUS if v != "target" or exp["kind"] == "switch"]
    return (table + [f"pareto-{exp.name}-{x}" for x in PARETO_X]
            + [f"response-{exp.name}-{v}" for v in versus])


def paper_artefacts(names: list[str], root: Path = ROOT) -> list[str]:
    """The artefacts of the experiments `names` (e.g. config/config.yaml's list): each experiment's own, and
    the covariance-size ablation of every family named like one of them (same first word: `testbed_covsize`
    goes with `testbed_red_blue`, `llama2_covsize` with `llama2_horses_motorcycles`, `ci_covsize` with `ci`)."""
    exps = [load_experiment(n, root) for n in names]
    out = [a for e in exps for a in experiment_artefacts(e, root)]
    prefixes = {n.split("_")[0] for n in names}
    out += [f"covsize-{f}" for f in covsize_families(root) if f.split("_")[0] in prefixes]
    return list(dict.fromkeys(out))


def available_artefacts(root: Path = ROOT, kind: str | None = None) -> list[str]:
    """The artefacts that the results under `root` can render now (every preset with score tables, and every
    covariance-size family with at least two members scored; its members get no artefacts of their own),
    optionally of one kind."""
    families = covsize_families(root)
    members = {e.name for f in families for e in covsize_family(f, root)}
    scored = [load_experiment(n, root) for n in list_experiments(root) if n not in members and has_scores(n, root)]
    out = []
    for exp in scored:
        twin = clip_twin(exp, root)
        out += experiment_artefacts(exp, root, twin=twin if twin and has_scores(twin.name, root) else None)
    for f in families:
        if sum(has_scores(e.name, root) for e in covsize_family(f, root)) >= 2:
            out.append(f"covsize-{f}")
    out = list(dict.fromkeys(out))
    return [a for a in out if kind is None or a.startswith(kind + "-")]


# ---------------------------------------------------------------- the pareto stage and sample grids

def render_experiment_pareto(exp, concept_tsv: Path, preservation_tsv: Path, *, figures: list[Path], points: Path,
                             table: Path) -> ParetoResult:
    """The pareto stage: plot, points TSV and LaTeX table of one experiment from its score tables."""
    scores = ExperimentScores(exp, read_tsv(concept_tsv), read_tsv(preservation_tsv))
    result = scores.pareto()
    plot_pareto(result, figures, experiment_title(exp))
    write_points(result, points)
    write_text_atomic(table, grid_latex(experiment_grid_table(scores)))
    return result


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


def experiment_grid(manifest: Path, out: Path, columns: int = 12) -> None:
    """Grid of the outputs of each concept in turn, one row per condition: different prompts first (the first
    seed of each), so a row shows as many prompts as fit in `columns`."""
    rows = read_tsv(manifest)
    by_cond: dict[str, list[dict]] = {}
    for r in rows:
        by_cond.setdefault(r["condition"], []).append(r)
    concepts = list(dict.fromkeys(r["concept"] for r in rows))
    per = max(1, columns // len(concepts))
    grid = []
    for cond, items in by_cond.items():
        order = sorted(items, key=lambda x: (int(x["seed"]), int(x["index"])))  # stable: same columns per row
        picked = [r for c in concepts for r in [x for x in order if x["concept"] == c][:per]]
        grid.append((cond, [manifest.parent / r["path"] for r in picked]))
    image_grid(grid, out)
