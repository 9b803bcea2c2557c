"""grid rule: sample grid of an experiment, one row per condition, the same prompts and seeds in every column."""

import warm

warm.start()  # forked from this run's warm server, if it has one (warm.py)

import argparse
from pathlib import Path

from steercore.stages.job import main_guard
from steercore.stages.pareto import render_sample_grid


@main_guard
def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--manifest", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--columns", type=int, default=12)
    a = p.parse_args()
    render_sample_grid(a.manifest, a.out, columns=a.columns)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
