"""cov_shard rule: neutral activation statistics of one shard of an experiment's neutral corpus."""

import warm

warm.start()  # forked from this run's warm server, if it has one (warm.py)

from pathlib import Path

from steercore.core.files import save_stats
from steercore.stages.cov import neutral_statistics
from steercore.stages.job import experiment_parser, job_device, job_experiment, main_guard


@main_guard
def main():
    p = experiment_parser(__doc__)
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--out", required=True, type=Path)
    a = p.parse_args()
    exp = job_experiment(a)
    with job_device(a.device, a.threads) as device:
        stats = neutral_statistics(exp, shard=a.shard, shards=a.shards, device=device)
    save_stats(stats, a.out)
    print(f"wrote {a.out}: {len(stats.sites)} sites, steps {stats.steps[0]}..{stats.steps[-1]}")


if __name__ == "__main__":
    main()
