"""cov and vectors stages: activation statistics of a neutral corpus shard, or of one concept's prompts."""

import argparse
from pathlib import Path

from steercore.cli import add_common_args, job_device, main_guard
from steercore.collect import collect_for_experiment
from steercore.experiment import load_experiment
from steercore.files import save_stats


@main_guard
def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("which", choices=["neutral", "concept"])
    p.add_argument("--experiment", required=True)
    p.add_argument("--concept", help="the concept (vectors stage)")
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--out", required=True, type=Path)
    add_common_args(p)
    a = p.parse_args()
    exp = load_experiment(a.experiment)
    with job_device(a.device, a.threads) as device:
        stats = collect_for_experiment(exp, a.which, concept=a.concept, shard=a.shard, shards=a.shards, device=device)
    save_stats(stats, a.out)
    print(f"wrote {a.out}: {len(stats.sites)} sites, steps {stats.steps[0]}..{stats.steps[-1]}")


if __name__ == "__main__":
    main()
