"""cov rule: combine the statistics shards of a neutral corpus exactly into one file."""

import warm

warm.start()  # forked from this run's warm server, if it has one (warm.py)

import argparse
from pathlib import Path

from steercore.core.files import save_stats
from steercore.stages.cov import merge_shards
from steercore.stages.job import main_guard


@main_guard
def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("shards", nargs="+", type=Path)
    p.add_argument("--out", required=True, type=Path)
    a = p.parse_args()
    merged = merge_shards(a.shards)
    save_stats(merged, a.out)
    print(f"merged {len(a.shards)} shard(s) into {a.out}: {merged.meta.get('samples')} samples")


if __name__ == "__main__":
    main()
