"""Packed vs per-condition jobs, cold vs warm starts, on the `ci` preset: wall and CPU time from Snakemake's
benchmark files.

Runs the ci Pareto plot from scratch four times, each in its own copy of the workflow: with the preset's
packing (the testbed packs: one generate and one score job per method) and with `--config pack=false` (one job
per condition), each with every job started cold (`warm_start=false`) and forked from the warm server
(workflow_scripts/warm.py). Prints, per run, the Snakemake wall time, and per rule the summed `s` (job wall
time) and, for cold runs, `cpu_time` columns of results/benchmarks/<rule>/**.tsv (a warm job's benchmark
measures its client, so its CPU time is not the job's).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_grain.py [--cores 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("Snakefile", "rules", "config", "report", "profiles", "envs", "workflow_scripts")


def run(dest: Path, cores: int, *extra: str) -> float:
    dest.mkdir(parents=True)
    for part in PARTS:
        subprocess.run(["cp", "-r", str(ROOT / part), str(dest / part)], check=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores), "results/pareto/ci.pdf", *extra],
                   cwd=dest, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def totals(dest: Path) -> dict[str, tuple[int, float, float]]:
    """rule → (jobs, summed wall s, summed cpu_time s)."""
    out: dict[str, list] = defaultdict(lambda: [0, 0.0, 0.0])
    for f in (dest / "results/benchmarks").rglob("*.tsv"):
        rule = f.relative_to(dest / "results/benchmarks").parts[0]
        with open(f) as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                out[rule][0] += 1
                out[rule][1] += float(row["s"])
                out[rule][2] += float(row["cpu_time"])
    return {k: tuple(v) for k, v in sorted(out.items())}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--keep", type=Path, help="run in this (new) folder and keep it, instead of a temporary one")
    a = p.parse_args()
    base = a.keep or Path(tempfile.mkdtemp(prefix="bench_grain_"))
    for name, config in (("packed, cold", ["warm_start=false"]), ("per-condition, cold", ["pack=false", "warm_start=false"]),
                         ("packed, warm", []), ("per-condition, warm", ["pack=false"])):
        folder = base / name.replace(", ", "_")
        wall = run(folder, a.cores, *(["--config", *config] if config else []))
        t = totals(folder)
        cold = "warm_start=false" in config
        cpu = f"; cpu {sum(v[2] for v in t.values()):.1f} s" if cold else ""
        print(f"{name}: snakemake wall {wall:.1f} s; jobs {sum(v[0] for v in t.values())}; "
              f"job wall {sum(v[1] for v in t.values()):.1f} s{cpu}")
        for rule, (n, s, c) in t.items():
            print(f"  {rule:<18} {n:3d} jobs  wall {s:7.1f} s" + (f"  cpu {c:7.1f} s" if cold else ""))


if __name__ == "__main__":
    main()
