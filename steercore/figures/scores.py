"""Score tables as the figures read them: an experiment with its rows, where they live, confidence intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from steercore.core.errors import ConfigError
from steercore.experiments.preset import ROOT, Experiment, load_experiment, results_dir
from steercore.figures.pareto import PARETO_X, ParetoResult, ScoreTable, pareto
from steercore.tables import CONCEPT_SCORES, PRESERVATION, read_tsv


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
    d = results_dir(root) / "scores" / name
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
    return ExperimentScores(exp, read_tsv(concept, CONCEPT_SCORES), read_tsv(pres, PRESERVATION))


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

