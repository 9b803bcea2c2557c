"""paper rule: one paper figure or table (PDF, SVG and LaTeX) from the score tables; names in steercore/figures/artefacts.py."""

import warm

warm.start()  # forked from this run's warm server, if it has one (warm.py)

import argparse
from pathlib import Path

from steercore.stages.job import add_preset_args, job_project, main_guard
from steercore.stages.paper import render_artefact


@main_guard
def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("artefact", help="e.g. pareto-testbed_red_blue-unrelated_score, table-ci, covsize-testbed_covsize")
    p.add_argument("--out-dir", type=Path, default=None, help="default: <results dir>/paper")
    add_preset_args(p)
    a = p.parse_args()
    for path in render_artefact(a.artefact, a.out_dir, root=job_project(a)):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
