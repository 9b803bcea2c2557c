"""cov stage, merge step: combine statistics shards exactly into one file."""

import argparse
from pathlib import Path

from steercore.cli import main_guard
from steercore.files import merge_stats_files, save_stats


@main_guard
def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("shards", nargs="+", type=Path)
    p.add_argument("--out", required=True, type=Path)
    a = p.parse_args()
    merged = merge_stats_files(a.shards)
    save_stats(merged, a.out)
    print(f"merged {len(a.shards)} shard(s) into {a.out}: {merged.meta.get('samples')} samples")


if __name__ == "__main__":
    main()
