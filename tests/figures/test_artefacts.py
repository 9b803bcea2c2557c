"""Paper figures and tables (steercore/figures/, rules/paper.smk, notebooks/paper_figures.ipynb).

Fast tests render every artefact kind from synthetic score tables that follow the score stage's layout; the
slow test runs the `ci` preset (and its covariance-size family) through the workflow, builds every paper
target of it and executes the notebook against those results.
"""

import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from steercore import ConfigError
from steercore.experiments.preset import ROOT, load_experiment
from steercore.figures.artefacts import (Artefact, available_artefacts, clip_twin, covsize_family,
                                         experiment_artefacts, paper_artefacts)
from steercore.figures.render import artefact_figure, draw, latex, render_artefact
from steercore.figures.scores import mean_ci
from steercore.stages.pareto import render_experiment_pareto
from steercore.tables import CONCEPT_SCORES, PRESERVATION

NOTEBOOK = ROOT / "notebooks" / "paper_figures.ipynb"
TESTBED = ["testbed_red_blue", "testbed_circle_square", "testbed_erase_red"]


def fake_scores(exp, root: Path) -> None:
    """Score tables of the score stage's layout in which steering moves source prompts towards the target (or
    away from the source) in proportion to β, and costs preservation in proportion to β."""
    gain = {"none": 0.0, "casteer": 0.08, "casteer_add": 0.06, "leace": 0.1, "midsteer": 0.12}
    src, tgt = exp["source"], exp["target"]
    text = exp.model_kind == "lm"
    metrics = ["consistency", "bleu"] + (["bert_precision", "bert_recall", "bert_f1"] if exp.preservation == "bertscore"
                                         else []) if text else [exp.preservation]
    # a covariance-size member: more statistics samples, a cleaner edit
    quality = 1 - 1 / math.log(exp["cov"]["samples"] + 2)
    concept, pres = [], []
    for cond in exp.conditions:
        move = min(0.7, gain.get(cond.method, 0.05) * cond.strength * quality)
        for prompts in exp.test_concepts:
            scored = [src] + ([tgt] if tgt else []) + ([prompts] if prompts not in (src, tgt) else [])
            for s in scored:
                mean = 0.8 if s == prompts else 0.1
                if prompts == src and s == src:
                    mean -= move
                elif prompts == src and s == tgt:
                    mean += move
                n = exp["samples_per_prompt"] * 4
                concept.append([cond.label, cond.method, f"{cond.strength:g}", prompts, s, str(n), f"{mean:.6g}",
                                "0.05", f"{min(1, mean + 0.1):.6g}"])
            for m in metrics:
                value = 1 - 0.03 * cond.strength if text else 4.0 * cond.strength * (2 - quality)
                pres.append([cond.label, cond.method, f"{cond.strength:g}", prompts, m, f"{value:.6g}",
                             str(exp["samples_per_prompt"] * 4)])
    d = root / "results" / "scores" / exp.name
    d.mkdir(parents=True, exist_ok=True)
    for name, header, rows in (("concept_scores", CONCEPT_SCORES, concept), ("preservation", PRESERVATION, pres)):
        (d / f"{name}.tsv").write_text("".join("\t".join(r) + "\n" for r in [header, *rows]))


@pytest.fixture
def root(tmp_path):
    """A workflow directory (config/ only) whose results/ the test writes."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    return tmp_path


def scored(root, *names):
    for name in names:
        fake_scores(load_experiment(name, root), root)


def test_artefact_names_parse_and_mistakes_give_one_line():
    a = Artefact.parse("table-testbed_red_blue+testbed_red_blue_clip")
    assert (a.kind, a.subjects, a.option) == ("table", ("testbed_red_blue", "testbed_red_blue_clip"), None)
    assert Artefact.parse("pareto-ci-unrelated_score").option == "unrelated_score"
    assert Artefact.parse("response-ci-strength").subjects == ("ci",)
    assert [e["cov"]["samples"] for e in Artefact.parse("covsize-testbed_covsize").experiments()] == [8, 32, 128, 512]
    for bad, message in [("pareto-ci-fid", "is not a paper artefact"), ("figure-ci", "is not a paper artefact"),
                         ("table-nope", "unknown experiment 'nope'"),
                         ("covsize-nope", "no covariance-size family 'nope'"),
                         ("response-testbed_erase_red-target", "erases a concept")]:
        with pytest.raises(ConfigError) as e:
            Artefact.parse(bad).experiments()
        assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_mean_ci_is_the_student_t_interval_from_the_population_std():
    lo, hi = mean_ci(1.0, 1.0, 4)  # sample std √(4/3); t(0.975, 3) = 3.18245
    assert hi - 1.0 == pytest.approx(3.182446 * math.sqrt(4 / 3) / 2, rel=1e-5) and 1.0 - lo == pytest.approx(hi - 1.0)
    assert mean_ci(0.5, 0.2, 1) == (0.5, 0.5)
    lo, hi = mean_ci(0.0, 1.0, 10_000)
    assert hi == pytest.approx(1.96 / math.sqrt(9999), rel=1e-3)


def test_the_testbed_paper_set_covers_every_kind():
    arts = paper_artefacts(TESTBED)
    assert "table-testbed_red_blue+testbed_red_blue_clip" in arts  # clipping off, then on
    assert not [a for a in arts if a.startswith("table-testbed_red_blue_clip")]
    assert {"pareto-testbed_erase_red-unrelated_preservation", "pareto-testbed_erase_red-unrelated_score",
            "response-testbed_red_blue-strength", "response-testbed_red_blue-preservation",
            "response-testbed_red_blue-target", "covsize-testbed_covsize"} <= set(arts)
    assert "response-testbed_erase_red-target" not in arts and "covsize-ci_covsize" not in arts
    assert paper_artefacts(["ci"])[-1] == "covsize-ci_covsize"
    assert clip_twin(load_experiment("llama2_horses_motorcycles")).name == "llama2_horses_motorcycles_clip"
    assert clip_twin(load_experiment("testbed_circle_square")) is None
    assert experiment_artefacts(load_experiment("testbed_red_blue_clip"))[0] == arts[0]
    for name in arts:
        Artefact.parse(name).experiments()


KINDS = {  # one artefact of each kind and modality, and the experiments it needs scores of
    "table-testbed_red_blue+testbed_red_blue_clip": ["testbed_red_blue", "testbed_red_blue_clip"],
    "table-sdxl_dogs_cats": ["sdxl_dogs_cats"],
    "table-llama2_toxicity_helpfulness": ["llama2_toxicity_helpfulness"],
    "pareto-testbed_red_blue-unrelated_preservation": ["testbed_red_blue"],
    "pareto-testbed_erase_red-unrelated_score": ["testbed_erase_red"],
    "pareto-testbed_lm_horses_motorcycles-unrelated_preservation": ["testbed_lm_horses_motorcycles"],
    "response-llama2_toxicity_helpfulness-strength": ["llama2_toxicity_helpfulness"],
    "response-llama2_toxicity_helpfulness-preservation": ["llama2_toxicity_helpfulness"],
    "response-llama2_toxicity_helpfulness-target": ["llama2_toxicity_helpfulness"],
    "response-testbed_erase_red-preservation": ["testbed_erase_red"],
    "covsize-testbed_covsize": [e.name for e in covsize_family("testbed_covsize")],
    "covsize-llama2_covsize": [e.name for e in covsize_family("llama2_covsize")],
}


@pytest.mark.parametrize("name", list(KINDS))
def test_every_artefact_kind_renders_from_score_tables(root, name):
    scored(root, *KINDS[name])
    out = root / "results" / "paper"
    paths = render_artefact(name, root=root)
    assert [p.name for p in paths] == [f"{name}.pdf", f"{name}.svg", f"{name}.tex"]
    pdf, svg, tex = (p.read_bytes() for p in paths)
    assert pdf.startswith(b"%PDF") and b"<svg" in svg and len(pdf) > 3000
    # the same scores give the same bytes (no dates, fixed SVG ids)
    again = render_artefact(name, out / "again", root=root)
    assert [p.read_bytes() for p in again] == [pdf, svg, tex]
    tex = tex.decode()
    if name.startswith("table-"):
        assert tex.count("\\begin{tabular}") == len(KINDS[name])
    else:
        assert f"\\includegraphics[width=\\linewidth]{{results/paper/{name}.pdf}}" in tex and "\\caption{" in tex


def test_table_rows_columns_and_scales(root):
    scored(root, "testbed_red_blue", "testbed_red_blue_clip", "sdxl_dogs_cats", "llama2_toxicity_helpfulness")
    tex = latex(Artefact.parse("table-testbed_red_blue+testbed_red_blue_clip"), root)
    off, on = tex.split("\\end{table}")[:2]
    assert "clipping off" in off and "clipping on" in on
    body = [ln for ln in off.splitlines() if ln.endswith("\\\\") and not ln.startswith(("Method", " & "))]
    assert len(body) == len(load_experiment("testbed_red_blue").conditions) and body[0].startswith("No steering & -- & ")
    # red, blue: S(red), S(blue), FID; green, yellow: S(red), S(blue), own, FID; 2 leading columns
    assert all(len(r.split(" & ")) == 2 + 3 + 3 + 4 + 4 for r in body)
    assert "MidSteer & 3 & " in off and "\\cmidrule(lr){3-5}" in off
    sdxl = latex(Artefact.parse("table-sdxl_dogs_cats"), root)  # CLIP score ×100 as in the paper
    assert "No steering & -- & 80.0 & 10.0 & " in sdxl and "×100" not in sdxl and "$\\times$100" in sdxl
    tox = latex(Artefact.parse("table-llama2_toxicity_helpfulness"), root)
    assert "BERT-P" in tox and "toxicity: detoxify, others: judge" in tox


def test_notebook_helpers_read_whatever_results_exist(root):
    assert available_artefacts(root) == []
    scored(root, "testbed_red_blue", "testbed_erase_red", "testbed_covsize_n8")
    arts = available_artefacts(root)
    assert "table-testbed_red_blue" in arts and "covsize-testbed_covsize" not in arts  # one member is not enough
    scored(root, "testbed_covsize_n128", "testbed_red_blue_clip")
    arts = available_artefacts(root)
    assert "table-testbed_red_blue+testbed_red_blue_clip" in arts and "covsize-testbed_covsize" in arts
    assert available_artefacts(root, "covsize") == ["covsize-testbed_covsize"]
    fig = artefact_figure("covsize-testbed_covsize", root)  # the two members that have scores
    assert {t.get_text() for t in fig.axes[0].get_legend().get_texts()} >= {"N = 8", "N = 128"}
    with pytest.raises(ConfigError, match="no scores for experiment 'testbed_covsize_n32'"):
        draw(Artefact.parse("covsize-testbed_covsize"), root)


def test_pareto_stage_outputs(root):
    scored(root, "ci")
    exp = load_experiment("ci", root)
    d = root / "results" / "scores" / "ci"
    out = root / "out"
    res = render_experiment_pareto(exp, d / "concept_scores.tsv", d / "preservation.tsv",
                                   figures=[out / "ci.pdf", out / "ci.svg"], points=out / "ci.tsv", table=out / "ci.tex")
    assert len(res.points) == 6 and any(p.frontier for p in res.points)
    assert (out / "ci.tsv").read_text().count("\n") == 1 + 1 + 6 + 1
    assert "\\begin{tabular}" in (out / "ci.tex").read_text()


def run_snakemake(cwd, *args, timeout=900):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    return res.stdout + res.stderr


def test_paper_targets_resolve_in_a_dry_run():
    out = run_snakemake(ROOT, "-n", "paper_all", "--quiet", "rules")
    jobs = {ln.split()[0]: int(ln.split()[1]) for ln in out.splitlines() if re.fullmatch(r"\w+\s+\d+", ln.strip())}
    assert jobs["paper"] == len(paper_artefacts(run_config_experiments())), jobs
    real = ["table-llama2_horses_motorcycles+llama2_horses_motorcycles_clip", "covsize-llama2_covsize",
            "response-llama2_toxicity_helpfulness-target", "pareto-sdxl_erase_dogs-unrelated_score"]
    out = run_snakemake(ROOT, "-n", *[f"results/paper/{a}.pdf" for a in real], "--quiet", "rules")
    # one generate job per condition (issue 12) of each experiment whose outputs the artefacts score
    generating = {e["outputs_from"] or e.name for a in real for e in Artefact.parse(a).experiments()}
    n_generate = sum(len(load_experiment(g).job_units()) for g in generating)
    assert re.search(r"paper\s+4\b", out) and re.search(rf"generate\s+{n_generate}\b", out), out[-2000:]


def run_config_experiments():
    import yaml

    return yaml.safe_load((ROOT / "config/config.yaml").read_text())["experiments"]


@pytest.mark.slow
def test_ci_paper_targets_and_notebook(tmp_path, monkeypatch):
    """The ci preset and its covariance-size family through the workflow, every paper target of them, and the
    notebook executed against those results: every figure shows."""
    import nbformat
    from nbclient import NotebookClient
    from checks import workflow_copy

    wf = workflow_copy(tmp_path)
    names = paper_artefacts(["ci"])
    assert len(names) == 7
    t0 = time.time()
    run_snakemake(wf, *[f"results/paper/{a}.pdf" for a in names])
    took = time.time() - t0
    made = sorted(p.name for p in (wf / "results/paper").iterdir())
    assert made == sorted(f"{a}.{s}" for a in names for s in ("pdf", "svg", "tex")), made
    print(f"ci paper targets: {len(made)} files in {took:.0f} s")
    # rerendered from the TSVs alone: delete one artefact and only its paper job reruns
    (wf / "results/paper/table-ci.pdf").unlink()
    out = run_snakemake(wf, "results/paper/table-ci.pdf", "--quiet", "rules")
    assert re.search(r"paper\s+1\b", out) and "generate" not in out and "score" not in out, out[-2000:]

    nb = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(wf)}}).execute()
    shown = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    titles = [o["data"]["text/markdown"] for o in shown if "text/markdown" in o.get("data", {})]
    images = [o for o in shown if "image/png" in o.get("data", {})]
    errors = [o for o in shown if o.get("output_type") == "error"]
    assert not errors, errors
    assert sorted(t.split("`")[1] for t in titles if t.startswith("####")) == sorted(names), titles
    assert len(images) == len(names)  # one figure per artefact (tables drawn as tables)
    assert sum("\\begin{tabular}" in t for t in titles) == 1  # the table's LaTeX, shown under its figure


def test_per_method_strength_grids_reach_points_tables_and_curves(root):
    """testbed_red_blue gives each method its own grid: every figure and table follows each method's grid."""
    from steercore.figures.response import _curve
    from steercore.figures.score_grid import experiment_grid_table
    from steercore.figures.scores import load_scores

    scored(root, "testbed_red_blue")
    scores = load_scores("testbed_red_blue", root)
    exp = scores.exp
    grids = {m: exp.strengths_of(m) for m in exp["methods"]}
    assert len({tuple(g) for g in grids.values()}) == 3  # three different grids
    points = scores.pareto("unrelated_preservation").points
    assert {m: [p.strength for p in points if p.method == m] for m in grids} == grids
    rows = [(name, beta) for name, beta, _ in experiment_grid_table(scores).rows]
    assert len(rows) == 1 + sum(map(len, grids.values())) and rows[0][1] == "--"
    for m, grid in grids.items():
        assert [b for b, *_ in _curve(scores, m, "red", "red")] == [0.0, *grid]


def test_twins_and_families_come_from_declarations_not_names(root):
    presets = root / "config" / "experiments"
    (presets / "testbed_circle_square_clip.yaml").write_text("extends: testbed_circle_square\nclip: true\n")
    (presets / "clipped_circles.yaml").write_text("twin_of: testbed_circle_square\nclip: true\n")
    (presets / "ablation.yaml").write_text("extends: testbed_circle_square\nmethods: [midsteer]\n"
                                           "strengths: [1]\nsweep: {cov.samples: [16, 64]}\n")
    (presets / "renamed_n8.yaml").write_text("extends: testbed_red_blue\n")  # named like a member: is not one
    (presets / "ablation_wide.yaml").write_text(  # varies cov.samples among other settings: no covsize curve
        "extends: testbed_circle_square\nsweep: {cov.samples: [16, 64], regularize.kind: [none, oas]}\n")
    assert clip_twin(load_experiment("testbed_circle_square", root), root).name == "clipped_circles"
    assert clip_twin(load_experiment("testbed_circle_square_clip", root), root) is None
    assert [e.name for e in covsize_family("ablation", root)] == ["ablation_samples16", "ablation_samples64"]
    arts = paper_artefacts(["testbed_circle_square"], root)
    assert arts[0] == "table-testbed_circle_square+clipped_circles" and arts[-1] == "covsize-ablation"
    with pytest.raises(ConfigError, match="no covariance-size family 'ablation_wide'"):
        covsize_family("ablation_wide", root)
    with pytest.raises(ConfigError, match="no covariance-size family 'renamed'"):
        covsize_family("renamed", root)
