"""The workflow end to end on the `ci` preset: outputs, Pareto table, report, and resume after SIGKILL.

The ci preset packs (testbed): one generate and one score job for the baseline and one per method."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from checks import workflow_copy
from steercore.tables import CONCEPT_SCORES, ITEM_SCORES, PARETO_POINTS, PRESERVATION, read_tsv

pytestmark = pytest.mark.slow
def snakemake(cwd: Path, *args, **kw) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, **kw)


def finish(proc: subprocess.Popen, timeout: int = 900) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def test_ci_preset_runs_end_to_end_and_resumes_after_sigkill(tmp_path):
    wf = workflow_copy(tmp_path)
    # smaller batches: the generate job then writes its images over several seconds, long enough to kill it
    ci = wf / "config/experiments/ci.yaml"
    ci.write_text(ci.read_text().replace("batch_size: 32", "batch_size: 4"))
    gen = wf / "results/generate/ci"

    proc = snakemake(wf, "results/pareto/ci.pdf")
    deadline = time.time() + 600
    while time.time() < deadline and len(list(gen.glob("*/*/[!.]*.png"))) < 12:
        assert proc.poll() is None, "snakemake ended before the generate stage was killed: " + proc.stdout.read()[-3000:]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and its job, mid-generation
    proc.wait()
    # finished images only: a temporary (".<name>.<random>.png") of the write the kill interrupted is not one
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in gen.glob("*/*/[!.]*.png")}
    assert 12 <= len(before) < 84, len(before)
    assert not (gen / "manifest.tsv").exists()
    digests = {p.parent.name: p.read_text() for p in gen.glob("*/digest.txt")}
    started = {p.parent.parent.name for p in before}  # <condition>/<prompt set>/<image>; which ran first is the scheduler's
    assert started and started <= set(digests), ("every started condition folder records its digest", started, digests)

    # a SIGKILLed Snakemake cannot remove its lock: release it (no other run is active), then rerun
    finish(snakemake(wf, "--unlock"))
    finish(snakemake(wf, "results/pareto/ci.pdf", "results/pareto/ci_grid.png"))
    after = list(gen.glob("*/*/[!.]*.png"))
    assert len(after) == 84  # 7 conditions x 3 concepts x 2 prompts x 2 seeds
    for p, stamp in before.items():  # images finished before the kill were not redone
        assert (p.stat().st_ino, p.stat().st_mtime_ns) == stamp, p
    assert not [p for p in gen.rglob(".*")], "temporary files left behind"
    for cond, digest in digests.items():  # same settings: same digest, files kept
        assert (gen / cond / "digest.txt").read_text() == digest
    jobs = sorted(p.parent.name for p in gen.glob("*/manifest.tsv"))
    assert jobs == ["casteer-all", "leace-all", "midsteer-all", "none-0"], jobs

    manifest = read_tsv(gen / "manifest.tsv")
    assert len(manifest) == 84 and {r["condition"] for r in manifest} >= {"none-0", "midsteer-2", "casteer-1"}
    scores = wf / "results/scores/ci"
    concept_rows = read_tsv(scores / "concept_scores.tsv")
    assert list(concept_rows[0]) == list(CONCEPT_SCORES)
    assert len(concept_rows) == 7 * (2 + 2 + 3)  # source/target prompts: 2 scored concepts; green: 3
    assert all(int(r["n"]) == 4 for r in concept_rows)
    assert list(read_tsv(scores / "preservation.tsv")[0]) == list(PRESERVATION)
    items = read_tsv(scores / "items.tsv")  # one row per output and scored concept
    assert list(items[0]) == list(ITEM_SCORES) and len(items) == 7 * 4 * (2 + 2 + 3)
    assert {r["accepted"] for r in items} <= {"true", "false"}
    assert sorted(p.name for p in (scores / "baseline_features").glob("*.npz")) == ["blue.npz", "green.npz", "red.npz"]
    points = read_tsv(wf / "results/pareto/ci.tsv")
    assert list(points[0]) == list(PARETO_POINTS)
    assert sum(r["frontier"] == "true" for r in points) >= 1
    for name in ("ci.pdf", "ci.svg", "ci.tex", "ci_grid.png"):
        assert (wf / "results/pareto" / name).stat().st_size > 500, name
    assert (wf / "results/cov/testbed-t2i").is_dir() and not list((wf / "results/cov").rglob("shards/*.safetensors"))

    # nothing left to do, and the report renders the plots and grids
    out = finish(snakemake(wf, "results/pareto/ci.pdf", "-n"))
    assert "Nothing to be done" in out
    finish(snakemake(wf, "results/pareto/ci.svg", "results/pareto/ci_grid.png", "--report", "report.html"))
    html = (wf / "report.html").read_text(errors="replace")
    assert "ci_grid.png" in html and "ci.svg" in html
