"""The job grain (one generate/score job per condition, or per method when packed) and reruns driven by the
params digests: real Snakemake runs of a tiny ci preset, checked by which jobs run and by file contents."""

import re
from pathlib import Path

import pytest

from steercore.tables import read_tsv
from test_workflow import finish, snakemake, workflow_copy

pytestmark = pytest.mark.slow
GATHERED = ("generate/ci/manifest.tsv", "scores/ci/items.tsv", "scores/ci/concept_scores.tsv",
            "scores/ci/preservation.tsv", "pareto/ci.tsv", "pareto/ci.intervals.tsv")


def tiny(wf: Path) -> Path:
    """The ci preset at its smallest: two methods, one strength, one seed, small statistics."""
    ci = wf / "config/experiments/ci.yaml"
    text = ci.read_text().replace("methods: [casteer, leace, midsteer]", "methods: [casteer, midsteer]")
    text = text.replace("samples_per_prompt: 2", "samples_per_prompt: 1").replace("strengths: [1, 2]", "strengths: [2]")
    ci.write_text(text.replace("cov: {samples: 64, aggregation: all, shards: 2}", "cov: {samples: 16, aggregation: all}")
                  .replace("vectors: {samples: 32}", "vectors: {samples: 8}"))
    return wf


def edit(wf: Path, old: str, new: str) -> None:
    ci = wf / "config/experiments/ci.yaml"
    assert old in ci.read_text(), old
    ci.write_text(ci.read_text().replace(old, new))


def planned(wf: Path, *args) -> dict[str, int]:
    """Job counts per rule of a dry run of the ci Pareto plot (empty: nothing to be done)."""
    out = finish(snakemake(wf, "results/pareto/ci.pdf", "-n", *args))
    if "Nothing to be done" in out:
        return {}
    table = out[out.index("Job stats:"):].split("\n\n")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"}


def planned_jobs(wf: Path, rule: str, *args) -> list[str]:
    """The {condition} wildcards of the planned jobs of `rule`."""
    out = finish(snakemake(wf, "results/pareto/ci.pdf", "-n", *args))
    blocks = re.findall(rf"^rule {rule}:\n((?:    .*\n)+)", out, re.M)
    return sorted(re.search(r"condition=([^,\s]+)", b)[1] for b in blocks)


def test_packed_and_per_condition_runs_give_identical_tables(tmp_path):
    (tmp_path / "packed").mkdir(), (tmp_path / "single").mkdir()
    packed, single = tiny(workflow_copy(tmp_path / "packed")), tiny(workflow_copy(tmp_path / "single"))
    targets = ("results/pareto/ci.pdf", "results/pareto/ci.intervals.tsv", "results/generate/ci/manifest.tsv")
    finish(snakemake(packed, *targets))
    finish(snakemake(single, *targets, "--config", "pack=false"))
    assert sorted(p.parent.name for p in (packed / "results/generate/ci").glob("*/manifest.tsv")) == [
        "casteer-all", "midsteer-all", "none-0"]
    assert sorted(p.parent.name for p in (single / "results/generate/ci").glob("*/manifest.tsv")) == [
        "casteer-2", "midsteer-2", "none-0"]
    for table in GATHERED:
        a, b = (packed / "results" / table).read_text(), (single / "results" / table).read_text()
        assert a == b, table
    items = read_tsv(packed / "results/scores/ci/items.tsv")
    assert len(items) == 3 * 2 * (2 + 2 + 3)  # conditions x (prompts x seeds) x scored concepts per prompt set


def test_reruns_follow_the_config(tmp_path):
    wf = tiny(workflow_copy(tmp_path))
    single = ("--config", "pack=false")
    finish(snakemake(wf, "results/pareto/ci.pdf", *single))
    gen = wf / "results/generate/ci"
    assert planned(wf, *single) == {}  # nothing changed: nothing reruns

    # a new strength: only its conditions are generated and scored
    edit(wf, "strengths: [2]", "strengths: [2, 3]")
    assert planned_jobs(wf, "generate", *single) == ["casteer-3", "midsteer-3"]
    assert planned_jobs(wf, "score", *single) == ["casteer-3", "midsteer-3"]
    edit(wf, "strengths: [2, 3]", "strengths: [2]")
    assert planned(wf, *single) == {}

    # only the scorer: scoring reruns, generation does not
    edit(wf, "vectors: {samples: 8}", "vectors: {samples: 8}\nscorers: {preservation: kid}")
    jobs = planned(wf, *single)
    assert "generate" not in jobs and jobs["score"] == 3, jobs
    edit(wf, "\nscorers: {preservation: kid}", "")

    # a prompt set: every generate job of the experiment, and everything downstream
    edit(wf, "green: {generator: testbed-shapes, n: 2}", "green: [a green circle, a green square]")
    assert planned_jobs(wf, "generate", *single) == ["casteer-2", "midsteer-2", "none-0"]
    edit(wf, "green: [a green circle, a green square]", "green: {generator: testbed-shapes, n: 2}")

    # guidance: every generate job reruns for real, and no file made under the old digest survives
    before = {p: p.read_bytes() for p in gen.glob("*/*/*.png")}
    digests = {p.parent.name: p.read_text() for p in gen.glob("*/digest.txt")}
    edit(wf, "steps: 8", "steps: 8\nguidance: 1.5")
    assert planned_jobs(wf, "generate", *single) == ["casteer-2", "midsteer-2", "none-0"]
    finish(snakemake(wf, "results/pareto/ci.pdf", *single))
    after = {p: p.read_bytes() for p in gen.glob("*/*/*.png")}
    assert after.keys() == before.keys()
    assert sum(after[p] != before[p] for p in before) > len(before) // 2, "images were not regenerated"
    assert all((gen / c / "digest.txt").read_text() != d for c, d in digests.items())
    assert planned(wf, *single) == {}


def test_paper_presets_run_one_condition_per_job(tmp_path):
    wf = workflow_copy(tmp_path)
    out = finish(snakemake(wf, "results/pareto/sdxl_dogs_cats.pdf", "-n"))
    counts = dict(re.findall(r"^(generate|score)\s+(\d+)$", out, re.M))
    assert counts == {"generate": "22", "score": "22"}, counts  # baseline + 3 methods x 7 strengths
