"""baseline_features rule: image features of the baseline's outputs, once, for every condition's FID/KID."""

import warm

warm.start()  # forked from this run's warm server, if it has one (warm.py)

from pathlib import Path

from steercore.stages.job import experiment_parser, job_device, job_experiment, main_guard
from steercore.stages.score import baseline_features


@main_guard
def main():
    p = experiment_parser(__doc__)
    p.add_argument("--generated", required=True, type=Path, help="the generating experiment's folder")
    p.add_argument("--manifest", required=True, type=Path, help="the baseline job's manifest")
    p.add_argument("--out", required=True, type=Path, help="folder for one <prompt set>.npz each")
    a = p.parse_args()
    exp = job_experiment(a)
    with job_device(a.device, a.threads) as device:
        n = baseline_features(exp, [a.manifest], a.generated, a.out, device=device)
    print(f"wrote the baseline features of {n} prompt sets to {a.out}")


if __name__ == "__main__":
    main()
