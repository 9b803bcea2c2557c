"""The vectors stage: the mean activation of one concept's prompts per site (and step)."""

from __future__ import annotations

from steercore.core.stats import ActivationStats
from steercore.experiments.preset import Experiment
from steercore.experiments.promptsets import vector_prompts
from steercore.stages.statistics import collect


def concept_means(exp: Experiment, concept: str, *, device: str = "cpu") -> ActivationStats:
    """The concept's mean activations over `vectors.samples` prompts (cycled from its prompt set, each
    `vectors.seeds_per_prompt` times in a row); text j is generated with seed `vectors.seed` + j."""
    texts = vector_prompts(exp, concept)
    seed = exp["vectors"].get("seed", exp["seed"])
    stats = ActivationStats("concept", exp["vectors"]["aggregation"],
                            meta={"model": exp.stats_model, "source": "prompts", "concept": concept,
                                  "samples": len(texts), "seed": seed})
    return collect(exp, texts, stats, seed=seed, desc=f"vectors {concept}", device=device)
