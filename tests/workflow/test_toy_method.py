"""A method declared once, in this test module, runs through every stage of the ci preset: the schema accepts
it, the plan fits it, generate applies it, score scores it and the Pareto figure draws it with its own marker."""

import pytest
import torch
import yaml

from steercore.core.errors import ConfigError
from steercore.core.files import save_stats
from steercore.core.methods import METHODS, AddVector, Method
from steercore.experiments.preset import ROOT, load_experiment
from steercore.stages.cov import neutral_statistics
from steercore.stages.gather import gather_manifest, gather_scores
from steercore.stages.generate import generate_unit
from steercore.stages.pareto import render_experiment_pareto
from steercore.stages.score import score_unit
from steercore.tables import PARETO_POINTS, read_tsv

pytestmark = pytest.mark.slow


def fit_mean_shift(source, target, mu, sigma, *, clip, renormalize):
    """x' = x + β·(t − s): moves the source mean onto the target mean at β = 1, everything else along with it."""
    s = torch.as_tensor(source, dtype=torch.float64)
    t = torch.as_tensor(target, dtype=torch.float64)
    return AddVector(v=t - s, renormalize=False, method="mean_shift")


MEAN_SHIFT = Method("mean_shift", fit_mean_shift, label="Mean shift", marker="P", colour="tab:purple",
                    needs_target=True)


def ci_preset(tmp_path, methods):
    cfg = yaml.safe_load((ROOT / "config" / "experiments" / "ci.yaml").read_text())
    cfg["methods"] = methods
    path = tmp_path / "ci_toy.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_unregistered_method_is_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"ci_toy.yaml: methods.0: 'mean_shift' is not allowed; choose one of casteer"):
        load_experiment(ci_preset(tmp_path, ["mean_shift"]))


def test_a_toy_method_runs_the_ci_preset_end_to_end(tmp_path, monkeypatch):
    from steercore.stages.vectors import concept_means

    monkeypatch.setitem(METHODS, "mean_shift", MEAN_SHIFT)
    exp = load_experiment(ci_preset(tmp_path, ["mean_shift", "midsteer"]))
    root = tmp_path
    for path, stats in [(exp.cov_path(), neutral_statistics(exp, device="cpu"))] + \
            [(exp.vectors_path(c), concept_means(exp, c, device="cpu")) for c in exp.concepts]:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        save_stats(stats, root / path)
    gen = root / "results" / "generate" / exp.name
    scores = root / "results" / "scores" / exp.name
    manifests, items, preservation = [], [], []
    for cond in exp.conditions:  # one job per condition, as the workflow runs them on the paper presets
        manifests.append(gen / "jobs" / f"{cond.label}.tsv")
        assert generate_unit(exp, [cond], gen, manifests[-1], device="cpu", root=root) == 3 * 2 * 2
    assert gather_manifest(exp, manifests, gen / "manifest.tsv") == 5 * 3 * 2 * 2  # 5 conditions
    assert len(list((gen / "mean_shift-2").rglob("*.png"))) == 12
    for cond in exp.conditions:
        items.append(scores / "jobs" / f"{cond.label}.items.tsv")
        preservation.append(scores / "jobs" / f"{cond.label}.preservation.tsv")
        score_unit(exp, [cond.label], [gen / "manifest.tsv"], gen, items[-1], preservation[-1], device="cpu")
    gather_scores(exp, items, preservation, items_out=scores / "items.tsv", concept_out=scores / "concept.tsv",
                  preservation_out=scores / "preservation.tsv")
    out = root / "results" / "pareto"
    result = render_experiment_pareto(exp, scores / "concept.tsv", scores / "preservation.tsv",
                                      figures=[out / "ci_toy.pdf", out / "ci_toy.svg"], points=out / "ci_toy.tsv",
                                      table=out / "ci_toy.tex")
    points = {(r["method"], r["strength"]): r for r in read_tsv(out / "ci_toy.tsv", PARETO_POINTS)}
    assert {("mean_shift", "1"), ("mean_shift", "2"), ("midsteer", "1"), ("midsteer", "2")} <= set(points)
    # shifting red towards blue turns red prompts blue: y (blue − red score) rises far past the baseline
    # (measured on this preset: y −1.43 at β = 1, 1.47 at β = 2, baseline −1.31)
    assert float(points[("mean_shift", "2")]["y"]) > result.baseline.y + 1.0, points
    assert "Mean shift" in (out / "ci_toy.svg").read_text() and "Mean shift" in (out / "ci_toy.tex").read_text()
