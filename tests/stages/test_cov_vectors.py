"""The cov and vectors stages on tiny real models: sharded statistics merge into the single-job result."""

import pytest
import torch
import yaml

from steercore.stages.cov import neutral_statistics
from steercore.stages.vectors import concept_means
from steercore.experiments.preset import load_experiment
from steercore.core.files import load_stats, merge_stats_files, save_stats
from tiny_models import build_lm, build_sd


def experiment(tmp_path, model, **extra):
    (tmp_path / "corpus.txt").write_text("\n".join(f"caption number {i} about a dog" for i in range(12)))
    cfg = {"model": str(model), "kind": "switch", "source": "dogs", "target": "cats", "methods": ["midsteer"],
           "strengths": [1], "prompts": {"source": ["a dog"], "target": ["a cat"]}, "steps": 2, "guidance": 5.0,
           "batch_size": 4, "cov": {"corpus": f"file:{tmp_path / 'corpus.txt'}", "samples": 12, "shards": 3},
           "vectors": {"prompts": ["a photo of a {}", "a {} running"], "samples": 3}, **extra}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_experiment(path)


def merged_equals_whole(tmp_path, exp):
    """Batches of 4 = shards of 4 texts, so every text sees the same batch in both runs."""
    shards = []
    for k in range(3):
        shards.append(tmp_path / f"shard{k}.safetensors")
        save_stats(neutral_statistics(exp, shard=k, shards=3, device="cpu"), shards[-1])
    merged = merge_stats_files(shards)
    whole = neutral_statistics(exp, device="cpu")
    assert merged.moments.keys() == whole.moments.keys() and merged.meta["samples"] == 12
    for key, m in whole.moments.items():
        got = merged.moments[key]
        assert got.n == m.n
        assert ((got.mean - m.mean).abs().max() / m.mean.abs().max()).item() <= 1e-10
        assert ((got.cov - m.cov).abs().max() / m.cov.abs().max()).item() <= 1e-10
    return whole


def test_diffusion_shards_merge_exactly_and_vectors_cover_every_step(tmp_path, tiny_cache):
    exp = experiment(tmp_path, build_sd(tiny_cache))
    whole = merged_equals_whole(tmp_path, exp)
    assert whole.steps == [0, 1] and set(whole.sites) >= {"down.0", "mid.0", "up.0"}
    dogs = concept_means(exp, "dogs", device="cpu")
    assert dogs.kind == "concept" and dogs.aggregation == "average" and dogs.steps == [0, 1]
    assert dogs.count(0, "up.0") == 3  # one sample per prompt (average aggregation)
    save_stats(dogs, tmp_path / "dogs.safetensors")
    assert load_stats(tmp_path / "dogs.safetensors", expect_sites=whole.sites).meta["concept"] == "dogs"


def test_single_step_statistics_keep_step_zero_only(tmp_path, tiny_cache):
    exp = experiment(tmp_path, build_sd(tiny_cache), cov={"corpus": f"file:{tmp_path / 'corpus.txt'}",
                                                          "samples": 4, "per_step": False})
    assert neutral_statistics(exp, device="cpu").steps == [0]


def test_language_model_shards_merge_exactly(tmp_path, tiny_cache):
    exp = experiment(tmp_path, build_lm("llama", tiny_cache), llm_site="residual")
    whole = merged_equals_whole(tmp_path, exp)
    assert whole.steps == [0] and "layers.1.residual" in whole.sites
