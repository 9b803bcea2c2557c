"""Every paper preset end to end before anyone spends a GPU hour: `config/paper.yaml` (every shipped preset of a
real model, and every paper artefact of them) run by Snakemake on the stand-in weights (tests/standin_hub.py:
tiny random models and data sets under the real repo ids, found offline by the real loading code) at the
smallest scale, through `all` and `paper_all`; then every output the DAG declares is checked.

`scale=0.0001` keeps each preset's structure (models, methods, strengths, prompt-set names, sites, scorers,
shards) and shrinks its counts to their minima; `pack=true` runs one generate and one score job per method
(test_grain.py checks that per-condition jobs give identical tables, and the per-condition DAG of the paper
presets). The run is one Snakemake invocation of 349 jobs; forked from the warm server (workflow_scripts/warm.py)
they take about 7.5 min on 2 cores, where starting each cold (importing torch, transformers and diffusers
again) took about half an hour."""

import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from checks import workflow_copy
from steercore.experiments.preset import ROOT, list_experiments, load_experiment
from steercore.figures.artefacts import covsize_families, paper_artefacts
from steercore.tables import read_tsv

pytestmark = [pytest.mark.slow, pytest.mark.presets]
PAPER = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
ARGS = ("--configfile", "config/paper.yaml", "--config", "device=cpu", "scale=0.0001", "pack=true", "--")
TARGETS = ("all", "paper_all")


def real_model_presets() -> tuple[list[str], list[str]]:
    """(presets of a real model that are no sweep member, sweep families of a real model)."""
    real = [load_experiment(n) for n in list_experiments() if not load_experiment(n)["model"].startswith("testbed-")]
    return [e.name for e in real if e.family is None], sorted({e.family for e in real if e.family})


def test_paper_config_lists_every_preset_of_a_real_model():
    presets, families = real_model_presets()
    assert presets and families  # the shipped presets were found (guards the checks below)
    assert sorted(PAPER["experiments"]) == sorted(presets)
    artefacts = set(paper_artefacts(PAPER["experiments"])) | set(PAPER["artefacts"])
    covsize = [f for f in covsize_families() if f in families]
    assert covsize and {f"covsize-{f}" for f in covsize} <= artefacts
    hogs = sorted(n for n in presets if n.startswith("hogs_"))
    assert {"leaderboard-hogs_sd15_public+hogs_sd15_seed_public",
            "leaderboard-hogs_sd15_private+hogs_sd15_seed_private"} <= artefacts and len(hogs) == 4


def snakemake(wf: Path, env: dict, *args: str, timeout: int) -> str:
    res = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd=wf, env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-6000:]
    return res.stdout + res.stderr


def declared_outputs(wf: Path, env: dict) -> dict[str, str]:
    """Every output file of the DAG of `all` and `paper_all` → its status in `snakemake --summary`."""
    out = snakemake(wf, env, "--summary", *ARGS, *TARGETS, timeout=600)
    lines = [ln.split("\t") for ln in out.splitlines() if "\t" in ln]
    header = lines[0]
    assert header[0] == "output_file" and "status" in header, header
    status = header.index("status")
    return {row[0]: row[status] for row in lines[1:] if len(row) > status}


def _non_empty(path: Path) -> bool:
    """A file with bytes, or a directory output (baseline features) holding at least one such file."""
    if path.is_dir():
        return any(p.is_file() and p.stat().st_size > 0 and p.name != ".snakemake_timestamp" for p in path.iterdir())
    return path.is_file() and path.stat().st_size > 0


def per_experiment_time(results: Path) -> dict[str, float]:
    """Summed wall seconds of the jobs of each experiment (from Snakemake's benchmark files)."""
    total = defaultdict(float)
    for bench in (results / "benchmarks").rglob("*.tsv"):
        rel = bench.relative_to(results / "benchmarks").parts
        key = rel[1].removesuffix(".tsv") if rel[0] not in ("cov", "cov_shard", "vectors", "paper") else rel[0]
        total[key] += float(bench.read_text().splitlines()[1].split("\t")[0])
    return dict(sorted(total.items()))


def test_every_paper_preset_runs_end_to_end_on_the_standins(standin_hub, tmp_path, capsys):
    wf = workflow_copy(tmp_path)
    env = {**os.environ, **standin_hub.env(), "PYTHONPATH": os.pathsep.join(
        [str(ROOT), os.environ.get("PYTHONPATH", "")])}
    log = snakemake(wf, env, *ARGS, *TARGETS, timeout=5400)
    ran = dict(re.findall(r"^(\w+)\s+(\d+)$", log[log.index("Job stats:"):].split("\n\n")[0], re.M))
    for rule in ("cov_shard", "cov", "vectors", "generate", "baseline_features", "score", "gather_manifest",
                 "gather_scores", "pareto", "pareto_intervals", "grid", "paper"):
        assert int(ran.get(rule, 0)) > 0, (rule, ran)  # every rule of the DAG ran
    with capsys.disabled():  # each preset's cost on the stand-ins, in every test log (CI's included)
        print("\nsummed job wall seconds per experiment (shared statistics and paper figures per rule):")
        for name, seconds in per_experiment_time(wf / "results").items():
            print(f"  {name:<48} {seconds:7.1f} s")

    # every output the DAG declares exists, is not empty and is up to date; nothing is left to do
    outputs = declared_outputs(wf, env)
    assert len(outputs) > 300, len(outputs)
    kept = {f for f, s in outputs.items() if s == "ok"}
    temporary = {f for f, s in outputs.items() if s == "removed temp file"}  # covariance shards, once merged
    assert temporary and all("/shards/" in f for f in temporary), sorted(temporary)[:5]
    bad = {f: s for f, s in outputs.items() if f not in temporary | kept}
    bad.update({f: "empty or missing" for f in kept if not _non_empty(wf / f)})
    assert not bad, sorted(bad.items())[:20]
    assert "Nothing to be done" in snakemake(wf, env, "-n", *ARGS, *TARGETS, timeout=600)

    # the contents: per experiment a Pareto point per condition, scores of every condition; valid files
    results = wf / "results"
    for name in PAPER["experiments"]:
        exp = load_experiment(name)
        points = read_tsv(results / "pareto" / f"{name}.tsv")
        assert {(r["method"], float(r["strength"])) for r in points if r["method"] != "goal"} == {
            (c.method, c.strength) for c in exp.conditions}, name
        scored = {r["condition"] for r in read_tsv(results / "scores" / name / "concept_scores.tsv")}
        assert scored == {c.label for c in exp.conditions}, name
    for artefact in paper_artefacts(PAPER["experiments"]) + PAPER["artefacts"]:
        stem = results / "paper" / artefact
        assert stem.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-", artefact
        assert "<svg" in stem.with_suffix(".svg").read_text()[:2000], artefact
        assert stem.with_suffix(".tex").read_text().strip(), artefact
    for png in (results / "pareto").glob("*_grid.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    # the runs used the stand-ins under the real names, at the real revisions (no test-only path)
    sdxl_log = next((wf / "logs" / "generate" / "sdxl_dogs_cats").glob("*.log")).read_text()
    assert "models--stabilityai--stable-diffusion-xl-base-1.0/snapshots/" in sdxl_log, sdxl_log[:2000]
