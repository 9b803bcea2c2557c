"""score rule: concept scores and preservation for every condition and prompt set of an experiment."""

from pathlib import Path

from steercore.stages.job import experiment_parser, job_device, main_guard
from steercore.experiments.preset import load_experiment
from steercore.stages.score import score_experiment


@main_guard
def main():
    p = experiment_parser(__doc__)
    p.add_argument("--manifest", required=True, type=Path)
    p.add_argument("--concept-out", required=True, type=Path)
    p.add_argument("--preservation-out", required=True, type=Path)
    a = p.parse_args()
    exp = load_experiment(a.experiment)
    with job_device(a.device, a.threads) as device:
        n_c, n_p = score_experiment(exp, a.manifest, a.concept_out, a.preservation_out, device=device)
    print(f"wrote {n_c} concept-score rows to {a.concept_out} and {n_p} preservation rows to {a.preservation_out}")


if __name__ == "__main__":
    main()
