"""profiles/slurm: what it asks SLURM for (fast, everywhere), and a run on a real single-node SLURM cluster
(tests/slurm_cluster.py) whose outputs equal those of a local run, with SLURM — not Snakemake's local
executor — running every job, GPU jobs with a GPU.

The cluster test needs root and Debian (CI): it installs slurm-wlm and munge with .ci/slurm-setup if missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
import yte
from safetensors.torch import load as load_tensors

from snakemake.profiles import ProfileConfigFileParser

from slurm_cluster import REPO, slurm_cluster

SLURM_PROFILE = REPO / "profiles" / "slurm"
GPU_RULE_NAMES = ["cov_shard", "vectors", "generate", "score", "baseline_features"]
CPU_RULE_NAMES = ["cov", "pareto", "grid", "paper", "train_testbed"]
# Rules the workflow marks `localrules:` (cheap tables and plots): Snakemake runs them itself, never via sbatch.
LOCAL_RULES = ("all", "cov", "gather_manifest", "gather_scores", "pareto", "pareto_intervals", "grid", "paper",
               "paper_all")


@dataclass(frozen=True)
class Workflow:
    """What the SLURM test runs, and how its outputs are checked."""
    snakefile: Path
    targets: tuple[str, ...] = ()          # () = the Snakefile's default target
    args: tuple[str, ...] = ()             # extra snakemake arguments, e.g. ("--configfile", ...)
    # Repo paths copied into each run's working directory first (the real workflow finds config/ and
    # workflow_scripts/ relative to it); the Snakefile is then the copy's.
    files: tuple[str, ...] = ()
    workflow_profile: str = "none"         # "none": ignore the repo's profiles/default
    gpu_rules: frozenset[str] = frozenset()  # rules whose SLURM jobs must hold a GPU (and only those)
    compare: tuple[str, ...] = ("results",)  # outputs (files or trees) byte-identical to the local run's
    provenance: bool = False               # the stand-in's jobs record their SLURM job id and GPU


STAND_IN = Workflow(snakefile=REPO / "tests" / "data" / "slurm_workflow" / "Snakefile",
                    gpu_rules=frozenset({"generate"}), provenance=True)
# The real workflow's `ci` preset (needs the shipped testbed weights). Outputs compared: those that do not
# embed run times (benchmarks) or creation dates (PDF metadata).
CI_PRESET = Workflow(snakefile=REPO / "Snakefile", targets=("results/pareto/ci.pdf",),
                     files=("Snakefile", "rules", "config", "workflow_scripts", "envs", "report", "profiles"),
                     workflow_profile="default", gpu_rules=frozenset(GPU_RULE_NAMES),
                     compare=("results/cov", "results/vectors", "results/generate", "results/scores",
                              "results/pareto/ci.tsv"))
WORKFLOW = CI_PRESET

# Without accounting there is no sacct: ask squeue (the cluster keeps finished jobs for an hour), soon.
SLURM_TEST_ARGS = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
                   "--slurm-keep-successful-logs"]
SLURM_RUN_TIMEOUT = 420


def run_workflow(profile: Path | None, targets: list[str] | tuple[str, ...], workdir: Path, args=(),
                 timeout: float = SLURM_RUN_TIMEOUT, env: dict[str, str] | None = None,
                 workflow: Workflow = WORKFLOW) -> subprocess.CompletedProcess:
    """Run `workflow` in `workdir` with `profile` (None: locally on 2 cores); stdout+stderr in `.stdout`.

    The caller's SLURM and Steerflow site settings are dropped, so the run sees only the test's (`env`).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    for rel in workflow.files:
        src, dst = REPO / rel, workdir / rel
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    snakefile = workdir / workflow.snakefile.relative_to(REPO) if workflow.files else workflow.snakefile
    env = {**{k: v for k, v in os.environ.items()
              if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "STEERFLOW_SLURM_", "STEERFLOW_GPU"))},
           "HF_HUB_OFFLINE": "1", **(env or {})}
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(workdir),
           "--workflow-profile", workflow.workflow_profile, *workflow.args, *args]
    cmd += ["--profile", str(profile)] if profile is not None else ["--cores", "2"]
    return subprocess.run([*cmd, *targets], cwd=workdir, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def fit_profile(profile_dir: Path, dest: Path, cpus: int, mem_mb: int, site: dict[str, str] | None = None) -> Path:
    """profile_dir rendered to plain YAML, with each job's size cut to what the test node has.

    Everything else (executor, retries, runtimes, which rule gets a GPU) is the shipped profile's. The
    paper-sized requests (8 CPUs per GPU, 64 GB) would be rejected by a 2-CPU node. The profile reads its
    site settings (STEERFLOW_SLURM_*) when rendered: only those in `site` apply, not the caller's.
    """
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("STEERFLOW_SLURM_")}
    os.environ.update(site or {})
    try:
        with open(profile_dir / "config.yaml") as f:
            profile = yte.process_yaml(f, require_use_yte=True)
    finally:
        for k in site or {}:
            os.environ.pop(k, None)
        os.environ.update(saved)
    for resources in [profile.get("default-resources", {}), *profile.get("set-resources", {}).values()]:
        if "mem_mb" in resources:
            resources["mem_mb"] = min(int(resources["mem_mb"]), mem_mb // cpus)
        if "cpus_per_gpu" in resources:
            resources["cpus_per_gpu"] = 1
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return dest


def tree(root: Path, under) -> dict[str, bytes]:
    """{relative path: bytes} of the files `under` (files or directories) below root."""
    paths = [p for u in under for p in ([root / u] if (root / u).is_file() else sorted((root / u).rglob("*")))]
    return {str(p.relative_to(root)): p.read_bytes() for p in paths if p.is_file()}


def same_output(name: str, got: bytes, expected: bytes) -> bool:
    """Byte-identical, except statistics files: SLURM jobs run with the CPUs SLURM grants, and float32
    activations summed with another thread count differ in the last bits; their tensors must agree to 1e-5
    (relative) and their metadata exactly. Images, answers and score tables must be byte-identical."""
    if got == expected:
        return True
    if not name.endswith(".safetensors"):
        return False
    def meta(blob):
        n = struct.unpack("<Q", blob[:8])[0]
        return json.loads(blob[8:8 + n]).get("__metadata__")

    a, b = load_tensors(got), load_tensors(expected)
    return meta(got) == meta(expected) and a.keys() == b.keys() and all(
        torch.allclose(a[k].double(), b[k].double(), rtol=1e-5, atol=1e-10) for k in a)


def render_profile(monkeypatch, **site) -> dict:
    """profiles/slurm as Snakemake reads it, with the given STEERFLOW_SLURM_* settings (and no others)."""
    for var in [v for v in os.environ if v.startswith("STEERFLOW_SLURM_")]:
        monkeypatch.delenv(var)
    for var, value in site.items():
        monkeypatch.setenv(f"STEERFLOW_SLURM_{var.upper()}", value)
    with open(SLURM_PROFILE / "config.yaml") as f:
        args = ProfileConfigFileParser().parse(f)
    rules = {}
    for item in args["set-resources"]:
        rule, _, assignment = item.partition(":")
        key, _, value = assignment.partition("=")
        rules.setdefault(rule, {})[key] = value
    args["set-resources"] = rules
    args["default-resources"] = dict(item.split("=", 1) for item in args["default-resources"])
    return args


def test_profile_defaults_leave_site_settings_to_slurm(monkeypatch):
    args = render_profile(monkeypatch)
    assert args["executor"] == "slurm" and int(args["retries"]) >= 1 and int(args["latency-wait"]) >= 30
    # No status command is forced: a cluster with accounting keeps the plugin's sacct default.
    assert not any(key.startswith("slurm-status") for key in args)
    rules = args["set-resources"]
    assert sorted(rules) == sorted(GPU_RULE_NAMES + CPU_RULE_NAMES)
    for rule in GPU_RULE_NAMES:
        assert rules[rule]["gpu"] == "1" and int(rules[rule]["cpus_per_gpu"]) >= 1, rule
        assert int(rules[rule]["mem_mb"]) > 0 and "attempt" in rules[rule]["runtime"], rule
    for rule in CPU_RULE_NAMES:
        assert "gpu" not in rules[rule] and "cpus_per_gpu" not in rules[rule], rule
    everything = [args["default-resources"], *rules.values()]
    assert not any({"slurm_partition", "slurm_account", "gpu_model", "gres"} & set(r) for r in everything)


def test_profile_takes_partition_account_and_gpu_model_from_the_environment(monkeypatch):
    args = render_profile(monkeypatch, partition="all", account="123456", gpu_partition="gpu-h100",
                          gpu_model="h100")
    rules = args["set-resources"]
    # Quoted, so Snakemake's evaluation keeps the builtin-named partition "all" and the numeric account strings.
    assert args["default-resources"]["slurm_partition"] == "'all'"
    assert rules["pareto"]["slurm_partition"] == "'all'" and rules["pareto"]["slurm_account"] == "'123456'"
    for rule in GPU_RULE_NAMES:
        assert rules[rule]["slurm_partition"] == "'gpu-h100'" and rules[rule]["gpu_model"] == "'h100'"
        assert rules[rule]["slurm_account"] == "'123456'"
    gres = render_profile(monkeypatch, gres="gpu:a100:1")["set-resources"]["generate"]
    assert gres["gres"] == "'gpu:a100:1'" and gres["gpu"] == "0"  # --gres instead of --gpus, not both


def test_profile_resources_evaluate_in_snakemake(tmp_path):
    """A dry run shows the values the SLURM plugin will turn into sbatch options."""
    env = {"STEERFLOW_SLURM_PARTITION": "all", "STEERFLOW_SLURM_ACCOUNT": "123456",
           "STEERFLOW_SLURM_GPU_MODEL": "h100"}
    run = run_workflow(SLURM_PROFILE, STAND_IN.targets, tmp_path / "dry", args=["--dry-run"], env=env,
                       timeout=120, workflow=STAND_IN)
    assert run.returncode == 0, run.stdout[-4000:]
    resources = {m.group(1): m.group(2) for m in re.finditer(r"rule (\w+):\n(?:.*\n)*?\s+resources: (.*)", run.stdout)}
    assert "slurm_partition=all, slurm_account=123456" in resources["generate"]
    assert "gpu=1, cpus_per_gpu=8, gpu_model=h100" in resources["generate"]
    assert "runtime=180" in resources["generate"] and "runtime=15" in resources["pareto"]
    assert "gpu=" not in resources["pareto"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("the SLURM test starts a cluster and needs root on Linux (CI runs it as root)")
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        pytest.skip("SLURM is not installed and there is no apt-get to install Debian's slurm-wlm")
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as c:
        yield c


@pytest.mark.slurm
@pytest.mark.slow
def test_workflow_on_slurm_matches_local_run(cluster, tmp_path):
    local = run_workflow(None, WORKFLOW.targets, tmp_path / "local", timeout=600)
    assert local.returncode == 0, local.stdout[-4000:]

    profile = fit_profile(SLURM_PROFILE, tmp_path / "profile", **cluster.hardware,
                          site={"STEERFLOW_SLURM_GPU_PARTITION": cluster.gpu_partition})
    t0 = time.monotonic()
    # A local GPU pool in the submitting shell is exported to the jobs (--export=ALL): the jobs must still
    # use the GPU SLURM allocated, not one of these.
    run = run_workflow(profile, WORKFLOW.targets, tmp_path / "slurm", args=SLURM_TEST_ARGS,
                       env={"STEERFLOW_GPUS": "5,6", "STEERFLOW_GPU_LOCK_DIR": str(tmp_path / "locks")})
    wall = time.monotonic() - t0
    assert run.returncode == 0, f"{run.stdout[-6000:]}\n{cluster.diagnostics()}"

    expected, got = tree(tmp_path / "local", WORKFLOW.compare), tree(tmp_path / "slurm", WORKFLOW.compare)
    assert expected, "the local run produced nothing to compare"
    assert sorted(got) == sorted(expected)
    assert [k for k in expected if not same_output(k, got[k], expected[k])] == []

    jobs = check_slurm_ran_every_job(cluster, run.stdout, WORKFLOW.gpu_rules)
    if WORKFLOW.provenance:
        check_job_provenance(tmp_path / "slurm", jobs, WORKFLOW.gpu_rules)
    print(f"\nSLURM run: {wall:.1f} s wall, {len(jobs)} SLURM jobs: "
          + ", ".join(f"{rule}={job_id}" for job_id, rule in sorted(jobs.items(), key=lambda kv: int(kv[0]))))


def check_slurm_ran_every_job(cluster, log: str, gpu_rules) -> dict[str, str]:
    """Every job Snakemake ran was a SLURM batch job that completed; GPU rules held a GPU, others did not.

    Returns {SLURM job id: rule}.
    """
    submitted = re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log)
    n_jobs = re.search(r"^total\s+(\d+)", log, re.M)
    assert submitted, f"no SLURM submission in the log:\n{log[-4000:]}"
    # The job-count table counts the local rules too (`all`, the gathers, pareto...), never submitted.
    table = log[log.index("Job stats:"):n_jobs.end()] if n_jobs and "Job stats:" in log else ""
    local = sum(int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) in LOCAL_RULES)
    assert n_jobs and len(submitted) == int(n_jobs.group(1)) - local, log[-4000:]
    known = set(cluster.submitted_job_ids())
    jobs = {}
    for _, job_id in submitted:
        assert job_id in known, f"slurmctld never accepted job {job_id}"
        info = cluster.show_job(job_id)
        assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", info
        rule = re.match(r"rule_([A-Za-z0-9_]+?)(?:_wildcards_.*)?$", info["Comment"]).group(1)
        holds_gpu = "gres:gpu" in info.get("TresPerJob", "") + info.get("TresPerNode", "")
        assert holds_gpu == (rule in gpu_rules), (rule, info)
        # The profile sent GPU jobs to STEERFLOW_SLURM_GPU_PARTITION, the others to the default partition.
        assert info["Partition"] == (cluster.gpu_partition if rule in gpu_rules else cluster.partition), info
        jobs[job_id] = rule
    return jobs


def check_job_provenance(workdir: Path, jobs: dict[str, str], gpu_rules) -> None:
    """Stand-in workflow only: each job recorded, from inside, the SLURM job id and GPU it ran with."""
    seen = {}
    for path in sorted((workdir / "provenance").glob("*.tsv")):
        header, values = path.read_text().splitlines()
        row = dict(zip(header.split("\t"), values.split("\t")))
        rule = path.stem.split("-")[0]
        assert jobs.get(row["job_id"]) == rule, (path.name, row, jobs)
        if rule in gpu_rules:  # SLURM set CUDA_VISIBLE_DEVICES to the fake GPU it allocated; the pool kept out
            assert row["cuda_visible_devices"] in {"0", "1"} and row["job_gpus"] == row["cuda_visible_devices"]
            assert row["device"] != "cuda:0", row
        else:
            assert row["cuda_visible_devices"] == "unset" and row["job_gpus"] == "none"
        seen[row["job_id"]] = rule
    assert seen == jobs
