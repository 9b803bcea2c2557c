"""SIGKILL during cov_shard, vectors, generate and score (Snakemake and its job together), then `--unlock` and
the same command: the run completes and its outputs are byte-identical to an uninterrupted run's. The
uninterrupted run starts every job cold (`warm_start=false`), the killed ones fork them from the warm server
(workflow_scripts/warm.py): the two ways of starting a job give the same bytes."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from steercore.experiments.preset import ROOT

PARTS = ("Snakefile", "rules", "config", "report", "profiles", "envs", "workflow_scripts")
TARGET = "results/pareto/ci.pdf"
# Timings differ from run to run by nature; everything else must not.
VOLATILE = ("results/benchmarks/",)


def copy_workflow(dest: Path) -> Path:
    dest.mkdir()
    for part in PARTS:
        subprocess.run(["cp", "-r", str(ROOT / part), str(dest / part)], check=True)
    return dest


def start(wf: Path, *args) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd=wf, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    return out


def kill_while(wf: Path, rule: str) -> None:
    """Start the run, SIGKILL its whole process group once a `rule` job has started, and release the lock."""
    logs = wf / "logs" / rule
    seen = {p: p.stat().st_mtime_ns for p in logs.rglob("*.log")}  # jobs of earlier attempts
    proc = start(wf, TARGET)
    deadline = time.time() + 600
    # a job's shell command opens its log when the job starts
    while not [p for p in logs.rglob("*.log") if seen.get(p) != p.stat().st_mtime_ns]:
        assert proc.poll() is None, f"the run ended before a {rule} job started: " + proc.stdout.read()[-3000:]
        assert time.time() < deadline, f"no {rule} job within 600 s"
        time.sleep(0.05)
    time.sleep(1.0)  # inside the job: loading the model, computing or writing
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finish(start(wf, "--unlock"))


def digests(wf: Path) -> dict[str, str]:
    out = {}
    for p in sorted((wf / "results").rglob("*")):
        rel = p.relative_to(wf).as_posix()
        if p.is_file() and not rel.startswith(VOLATILE):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.mark.slow
def test_sigkill_in_every_stage_then_rerun_gives_byte_identical_outputs(tmp_path):
    reference = copy_workflow(tmp_path / "reference")
    finish(start(reference, TARGET, "--config", "warm_start=false"))
    assert not (reference / "logs" / "warm_server.log").exists()

    wf = copy_workflow(tmp_path / "killed")
    for rule in ("cov_shard", "vectors", "generate", "score"):
        kill_while(wf, rule)
    finish(start(wf, TARGET))
    assert "warm server ready" in (wf / "logs" / "warm_server.log").read_text()
    assert not [p for p in (wf / "logs").rglob("*.log") if "starting cold" in p.read_text()]

    want, got = digests(reference), digests(wf)
    assert sorted(got) == sorted(want)
    assert [k for k in want if got[k] != want[k]] == []
    # no temporary file of ours (Snakemake stamps a directory output with its own .snakemake_timestamp)
    left = [p for p in (wf / "results").rglob(".*") if p.is_file() and p.name != ".snakemake_timestamp"]
    assert not left, f"temporary files left behind: {left}"
