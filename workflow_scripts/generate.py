"""generate rule: images or answers for one job of an experiment (one condition, or a packed method)."""

import warm

warm.start()  # forked from this run's warm server, if it has one (warm.py)

from pathlib import Path

from steercore.experiments.preset import load_experiment
from steercore.stages.job import experiment_parser, job_device, job_project, main_guard
from steercore.stages.generate import generate_unit, unit_conditions


@main_guard
def main():
    p = experiment_parser(__doc__)
    p.add_argument("--unit", required=True, help="job label: a condition (none-0, casteer-2) or a pack (casteer-all)")
    p.add_argument("--pack", default="auto", choices=["auto", "true", "false"], help="config.yaml `pack`")
    p.add_argument("--out-dir", required=True, type=Path, help="the experiment's generate folder")
    p.add_argument("--manifest", required=True, type=Path, help="this job's manifest")
    a = p.parse_args()
    project = job_project(a)
    exp = load_experiment(a.experiment, project)
    conditions = unit_conditions(exp, a.unit, a.pack)
    with job_device(a.device, a.threads) as device:
        n = generate_unit(exp, conditions, a.out_dir.resolve(), a.manifest.resolve(), device=device,
                          root=project)
    print(f"{n} outputs of {', '.join(c.label for c in conditions)} listed in {a.manifest}")


if __name__ == "__main__":
    main()
