"""What the cov and vectors stages share: an experiment's statistics model run over texts."""

from __future__ import annotations

from steercore.core.stats import ActivationStats
from steercore.experiments.preset import Experiment
from steercore.models.collection import collect_lm, collect_t2i
from steercore.models.registry import load_model, resolve_spec


def collect(exp: Experiment, texts: list[str], stats: ActivationStats, *, seed: int, desc: str,
            device: str = "cpu") -> ActivationStats:
    """Fold the activations of `texts` into `stats` with the experiment's statistics model (text i of a
    diffusion model is generated with seed + i)."""
    name = exp.stats_model
    spec = resolve_spec(name)
    target = load_model(name, device=device, dtype=exp.cfg.get("dtype"))
    if spec.kind == "lm":
        model, tok = target
        return collect_lm(model, tok, texts, stats, model_name=name, llm_site=exp["llm_site"],
                          batch_size=exp["batch_size"], desc=desc)
    own = exp["stats_model"] is None  # a separate statistics model (sdxl-turbo for sdxl) keeps its own settings
    steps = exp["steps"] if own and exp["steps"] else spec.steps
    guidance = exp["guidance"] if own and exp["guidance"] is not None else spec.guidance
    return collect_t2i(target, texts, stats, steps=steps, guidance=guidance, batch_size=exp["batch_size"],
                       seed=seed, per_step=exp["cov"]["per_step"], desc=desc)
