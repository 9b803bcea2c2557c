"""score rule: per-output concept scores and preservation for the conditions of one job of an experiment."""

import warm

warm.start()  # forked from this run's warm server, if it has one (warm.py)

from pathlib import Path

from steercore.stages.job import experiment_parser, job_device, job_experiment, main_guard
from steercore.stages.generate import unit_conditions
from steercore.stages.score import score_unit


@main_guard
def main():
    p = experiment_parser(__doc__)
    p.add_argument("--unit", required=True, help="job label: a condition (none-0, casteer-2) or a pack (casteer-all)")
    p.add_argument("--pack", default="auto", choices=["auto", "true", "false"], help="config.yaml `pack`")
    p.add_argument("--generated", required=True, type=Path, help="the generating experiment's folder")
    p.add_argument("--manifests", required=True, type=Path, nargs="+",
                   help="generate manifests listing this job's conditions and the baseline")
    p.add_argument("--reference", type=Path, help="folder of the baseline's image features (images only)")
    p.add_argument("--items-out", required=True, type=Path)
    p.add_argument("--preservation-out", required=True, type=Path)
    a = p.parse_args()
    exp = job_experiment(a)
    labels = [c.label for c in unit_conditions(exp, a.unit, a.pack)]
    with job_device(a.device, a.threads) as device:
        n_i, n_p = score_unit(exp, labels, a.manifests, a.generated, a.items_out, a.preservation_out,
                              device=device, reference=a.reference)
    print(f"wrote {n_i} per-output scores to {a.items_out} and {n_p} preservation rows to {a.preservation_out}")


if __name__ == "__main__":
    main()
