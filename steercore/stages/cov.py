"""The cov stage: the neutral mean μ and covariance Σ per site (and step), one shard of the neutral corpus
per job (`cov_shard`), merged exactly (Chan et al.) by `cov`, so the result does not depend on the sharding."""

from __future__ import annotations

from pathlib import Path

from steercore.core.files import merge_stats_files
from steercore.core.stats import ActivationStats
from steercore.experiments.corpora import neutral_texts
from steercore.experiments.preset import Experiment
from steercore.stages.statistics import collect


def neutral_statistics(exp: Experiment, *, shard: int = 0, shards: int = 1, device: str = "cpu") -> ActivationStats:
    """Statistics of block `shard` of `shards` contiguous blocks of the experiment's neutral corpus."""
    c = exp["cov"]
    texts = neutral_texts(exp.corpus, c["samples"], exp["seed"], shard=shard, shards=shards,
                         root=exp.root_of("cov", "corpus"))
    stats = ActivationStats("neutral", c["aggregation"],
                            meta={"model": exp.stats_model, "source": exp.corpus, "samples": len(texts),
                                  "shard": f"{shard}/{shards}", "seed": exp["seed"]})
    seed = exp["seed"] + round(shard * c["samples"] / shards)  # text i has seed + i, whatever the sharding
    return collect(exp, texts, stats, seed=seed, desc=f"neutral {exp.corpus} {shard + 1}/{shards}", device=device)


def merge_shards(paths: list[Path]) -> ActivationStats:
    """The statistics of the whole corpus from its shards' files (exact; any order)."""
    return merge_stats_files(paths)
