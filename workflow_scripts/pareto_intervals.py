"""pareto_intervals rule: the Pareto plot's y per condition with a seeded 95% bootstrap interval over outputs."""

import warm

warm.start()  # forked from this run's warm server, if it has one (warm.py)

from pathlib import Path

from steercore.stages.job import job_experiment, main_guard, preset_parser
from steercore.figures.pareto import write_intervals
from steercore.tables import ITEM_SCORES, read_tsv


@main_guard
def main():
    p = preset_parser(__doc__)
    p.add_argument("--items", required=True, type=Path, help="results/scores/<experiment>/items.tsv")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    exp = job_experiment(a)
    n = write_intervals(exp, read_tsv(a.items, ITEM_SCORES), a.out, resamples=a.resamples, seed=a.seed)
    print(f"wrote {n} intervals to {a.out}")


if __name__ == "__main__":
    main()
