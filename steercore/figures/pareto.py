"""Pareto analysis: one (x, y) point per method × strength from the score tables, and the strict frontier.

y measures the concept change on source prompts: target score − source score for a switch (higher is
better), the erased concept's score for an erasure (lower is better). x measures what the edit costs on
unrelated prompts: preservation (FID against the unsteered images, or 1 − consistency for text; lower is
better) or the unrelated concepts' own scores (higher is better).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import mean

from steercore.core.errors import ConfigError
from steercore.experiments.preset import Condition, Experiment
from steercore.tables import PARETO_INTERVALS, PARETO_POINTS, write_tsv

PARETO_X = ("unrelated_preservation", "unrelated_score")


@dataclass(frozen=True)
class Point:
    method: str
    strength: float
    x: float
    y: float
    frontier: bool = False


@dataclass(frozen=True)
class ParetoResult:
    points: list[Point]  # every method × strength, frontier flags set
    baseline: Point  # the unsteered model
    goal: float  # the y an ideal edit reaches: the unsteered value on target prompts (switch)
    x_label: str
    y_label: str
    lower_x_better: bool
    higher_y_better: bool


class ScoreTable:
    """Lookup of mean concept scores and preservation values by (condition, prompts, scored/metric)."""

    def __init__(self, concept_rows: list[dict], preservation_rows: list[dict]):
        self.scores = {(r["condition"], r["prompts"], r["scored"]): float(r["mean"]) for r in concept_rows}
        self.pres = {(r["condition"], r["prompts"], r["metric"]): float(r["value"]) for r in preservation_rows}

    def score(self, cond: str, prompts: str, scored: str) -> float:
        try:
            return self.scores[(cond, prompts, scored)]
        except KeyError:
            raise ConfigError(f"no concept score for condition {cond}, prompts '{prompts}', scored against "
                              f"'{scored}'; rerun the score stage") from None

    def preservation(self, cond: str, prompts: str, metric: str | None = None) -> float:
        """The preservation value; metric=None takes the only metric the table has."""
        if metric is None:
            metrics = sorted({m for _, _, m in self.pres})
            if len(metrics) != 1:
                raise ConfigError(f"the preservation table holds {', '.join(metrics)}; say which metric to use")
            metric = metrics[0]
        try:
            return self.pres[(cond, prompts, metric)]
        except KeyError:
            raise ConfigError(f"no {metric} value for condition {cond} on prompts '{prompts}'; "
                              "rerun the score stage") from None


def strict_frontier(points: list[Point], lower_x_better: bool, higher_y_better: bool) -> list[Point]:
    """Flag the points whose y strictly improves on every point at least as good in x (pooled over methods)."""
    order = sorted(points, key=lambda p: ((p.x if lower_x_better else -p.x), (-p.y if higher_y_better else p.y)))
    best = None
    keep = set()
    for p in order:
        if best is None or (p.y > best if higher_y_better else p.y < best):
            keep.add((p.method, p.strength))
            best = p.y
    return [Point(p.method, p.strength, p.x, p.y, (p.method, p.strength) in keep) for p in points]


def pareto(exp: Experiment, concept_rows: list[dict], preservation_rows: list[dict]) -> ParetoResult:
    table = ScoreTable(concept_rows, preservation_rows)
    src, tgt = exp["source"], exp["target"]
    unrelated = list(exp["prompts"].get("unrelated", {}))
    x_mode = exp["pareto"]["x"]
    x_mode = "unrelated_preservation" if x_mode == "auto" else x_mode
    if not unrelated:
        raise ConfigError(f"experiment {exp.name}: the Pareto x axis needs unrelated prompt sets (prompts.unrelated)")
    text = exp.model_kind == "lm"
    metric = exp.preservation_metric

    def x_of(cond: str) -> float:
        if x_mode == "unrelated_score":
            return mean(table.score(cond, u, u) for u in unrelated)
        vals = [table.preservation(cond, u, metric) for u in unrelated]
        return mean(1 - v for v in vals) if text else mean(vals)

    if exp["kind"] == "switch":
        def y_of(cond: str) -> float:
            return table.score(cond, src, tgt) - table.score(cond, src, src)

        goal = table.score("none-0", tgt, tgt) - table.score("none-0", tgt, src)
        y_label = f"Δ score ({tgt} − {src}) on {src} prompts"
    else:
        def y_of(cond: str) -> float:
            return table.score(cond, src, src)

        goal = mean(table.score("none-0", u, src) for u in unrelated)
        y_label = f"{src} score on {src} prompts"
    if x_mode == "unrelated_score":
        x_label = "unrelated concepts' own score"
    else:
        x_label = f"1 − {metric} on unrelated prompts" if text else f"{metric.upper()} on unrelated prompts"
    base = Condition("none", 0.0).label
    points = [Point(c.method, c.strength, x_of(c.label), y_of(c.label)) for c in exp.conditions if c.method != "none"]
    lower_x = x_mode != "unrelated_score"
    higher_y = exp["kind"] == "switch"
    return ParetoResult(strict_frontier(points, lower_x, higher_y), Point("none", 0.0, x_of(base), y_of(base)), goal,
                        x_label, y_label, lower_x, higher_y)


def write_points(result: ParetoResult, path: Path) -> None:
    rows = [["none", "0", f"{result.baseline.x:.6g}", f"{result.baseline.y:.6g}", "baseline"]]
    rows += [[p.method, f"{p.strength:g}", f"{p.x:.6g}", f"{p.y:.6g}", str(p.frontier).lower()] for p in result.points]
    rows += [["goal", "", "", f"{result.goal:.6g}", ""]]
    write_tsv(path, PARETO_POINTS, rows)


# ---- 95% bootstrap intervals of y from the per-output scores (issue 12)


def bootstrap_y(exp: Experiment, item_rows: list[dict], *, resamples: int = 1000, seed: int = 0,
                level: float = 0.95) -> list[list]:
    """PARETO_INTERVALS rows: for the baseline and every method × strength, y (as in `pareto`) and its
    percentile bootstrap interval, resampling the outputs on source prompts (prompt index × seed) with
    replacement; a switch's two scores of one output stay paired. Seeded, so the table is reproducible."""
    import numpy as np

    src, tgt = exp["source"], exp["target"]
    by_output: dict[str, dict[tuple[str, str], dict[str, float]]] = {}
    for r in item_rows:
        if r["prompts"] == src:
            by_output.setdefault(r["condition"], {}).setdefault((r["index"], r["seed"]), {})[r["scored"]] = float(r["score"])
    rng = np.random.default_rng(seed)
    rows = []
    for cond in exp.conditions:
        outputs = list(by_output.get(cond.label, {}).values())
        if not outputs:
            raise ConfigError(f"no per-output scores of condition {cond.label} on '{src}' prompts; rerun the score stage")
        if exp["kind"] == "switch":
            per = np.array([o[tgt] - o[src] for o in outputs])
        else:
            per = np.array([o[src] for o in outputs])
        draws = per[rng.integers(0, len(per), size=(resamples, len(per)))].mean(axis=1)
        lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
        rows.append([cond.method, f"{cond.strength:g}", f"{per.mean():.6g}", f"{lo:.6g}", f"{hi:.6g}", str(len(per))])
    return rows


def write_intervals(exp: Experiment, item_rows: list[dict], path: Path, **kw) -> int:
    rows = bootstrap_y(exp, item_rows, **kw)
    write_tsv(path, PARETO_INTERVALS, rows)
    return len(rows)
