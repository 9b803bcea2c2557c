"""profiles/local-gpus on the real ci preset, one job per condition, with four fake GPU ids: the schedule is
rehearsed on the CPU (`device: cpu` with STEERFLOW_GPUS set), every GPU job holding one id of the pool for
its whole run, and the jobs' own logs say which id each held and when."""

import re
from pathlib import Path

import pytest

from test_workflow import finish, snakemake, workflow_copy

pytestmark = pytest.mark.slow
IDS = ("f0", "f1", "f2", "f3")
HOLD = re.compile(r"^device pool: pid (\d+) holds GPU id (\S+) of (\S+) \(rehearsal: running on the CPU\) at \S+ "
                  r"\(([0-9.]+)\)$", re.M)
RELEASE = re.compile(r"^device pool: pid (\d+) released GPU id (\S+) after [0-9.]+ s at \S+ \(([0-9.]+)\)$", re.M)


def holds(log: Path) -> list[tuple[str, float, float]]:
    """(id, taken, given back) of every hold a job's log records."""
    text = log.read_text()
    taken, released = HOLD.findall(text), RELEASE.findall(text)
    assert len(taken) == len(released) == 1, f"{log}: {text[-2000:]}"
    (pid, device, pool, start), (pid2, device2, end) = taken[0], released[0]
    assert pid == pid2 and device == device2 and pool == ",".join(IDS)
    return [(device, float(start), float(end))]


def most_at_once(spans) -> tuple[int, set[str]]:
    """The largest number of spans open at one instant, and their ids."""
    best = (0, set())
    for _, start, _ in spans:
        live = [s for s in spans if s[1] <= start < s[2]]
        if len(live) > best[0]:
            best = (len(live), {s[0] for s in live})
    return best


def test_four_conditions_of_the_ci_preset_run_at_once_on_four_ids(tmp_path, monkeypatch):
    wf = workflow_copy(tmp_path)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("STEERFLOW_GPUS", ",".join(IDS))
    monkeypatch.setenv("STEERFLOW_GPU_LOCK_DIR", str(tmp_path / "locks"))
    out = finish(snakemake(wf, "results/generate/ci/manifest.tsv", "--profile", "profiles/local-gpus",
                           "--cores", "8", "--config", "pack=false", "device=cpu", "threads=1"))
    assert re.search(r"Provided resources: gpu=(Resource\(\"gpu\", )?4\b", out), out[-3000:]

    conditions = sorted(p.stem for p in (wf / "logs/generate/ci").glob("*.log"))
    assert conditions == ["casteer-1", "casteer-2", "leace-1", "leace-2", "midsteer-1", "midsteer-2", "none-0"]
    generate = [h for c in conditions for h in holds(wf / f"logs/generate/ci/{c}.log")]
    every = generate + [h for rule in ("cov_shard", "vectors") for log in (wf / "logs" / rule).rglob("*.log")
                        for h in holds(log)]
    assert {d for d, _, _ in every} <= set(IDS)
    # four conditions at the same instant, each on its own id
    n, ids = most_at_once(generate)
    assert n == 4 and ids == set(IDS), (n, ids, generate)
    # and never two jobs of any rule on one id at once
    clashes = [(a, b) for i, a in enumerate(every) for b in every[i + 1:]
               if a[0] == b[0] and a[1] < b[2] and b[1] < a[2]]
    assert not clashes, clashes
    # the jobs really ran: every condition's images are listed in its manifest
    for c in conditions:
        rows = (wf / f"results/generate/ci/{c}/manifest.tsv").read_text().splitlines()
        assert len(rows) == 1 + 12, (c, len(rows))
