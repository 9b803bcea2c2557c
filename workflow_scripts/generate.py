"""generate rule: images or answers for the baseline and every method x strength of an experiment."""

from pathlib import Path

from steercore.stages.job import experiment_parser, job_device, main_guard
from steercore.experiments.preset import ROOT, load_experiment
from steercore.stages.generate import generate_experiment


@main_guard
def main():
    p = experiment_parser(__doc__)
    p.add_argument("--manifest", required=True, type=Path)
    a = p.parse_args()
    exp = load_experiment(a.experiment)
    with job_device(a.device, a.threads) as device:
        n = generate_experiment(exp, a.manifest.resolve(), device=device, root=ROOT)
    print(f"{n} outputs listed in {a.manifest}")


if __name__ == "__main__":
    main()
