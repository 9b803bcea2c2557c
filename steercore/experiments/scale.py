"""The `scale` knob: a preset at a fraction of its size, to rehearse a paper preset end to end in minutes.

`scale_preset(exp, factor)` multiplies every count of a resolved preset by `factor` and rounds up, never
below the count's minimum; what the experiment is — model, methods, strengths, prompt-set names, sites,
scorers, `cov.shards` — does not change. The counts and their minima:

| count | minimum |
|---|---|
| prompts of each prompt set (a list, a file's `limit`, a generator's `n`) | 1; 2 for images scored with FID/KID |
| `samples_per_prompt` | 1; 2 for images scored with FID/KID, unless the preset asks for 1 (scaling never raises a count) |
| `steps` of a diffusion model (its default when the preset has none) | 1 |
| `max_new_tokens` of an LLM | 1 |
| `cov.samples` | 2, and one per shard |
| `vectors.samples` | 2 |

A scaled preset records its factor (`Experiment.scale`): it enters the generation and scoring digests and the
statistics file names, so a scaled run never reuses full-size outputs, and scale 1 changes nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

from steercore.core.errors import ConfigError
from steercore.experiments.preset import Experiment


def check_scale(factor) -> float:
    """`factor` as a float, or one ConfigError line when it is not a number in (0, 1]."""
    ok = isinstance(factor, (int, float)) and not isinstance(factor, bool) and math.isfinite(factor) \
        and 0 < factor <= 1
    if not ok:
        raise ConfigError(f"scale: {factor!r} is not a number in (0, 1]; it multiplies every count of a preset "
                          "(1 = full size, e.g. 0.01 for a rehearsal)")
    return float(factor)


def scaled_count(n: int, factor: float, minimum: int = 1) -> int:
    """n × factor rounded up (after rounding away float noise: 100 × 0.07 is 7, not 8), at least `minimum`
    (or n, when the preset itself asks for fewer: scaling never raises a count)."""
    return max(min(minimum, n), math.ceil(round(n * factor, 9)))


def scale_preset(exp: Experiment, factor: float) -> Experiment:
    """The experiment with every count multiplied by `factor` (see the module docstring); `exp` at factor 1."""
    factor = check_scale(factor)
    if factor == 1:
        return exp
    cfg = json.loads(json.dumps(exp.cfg))
    images = exp.model_kind == "t2i"
    # FID/KID need two images per prompt set. Two prompts per set for every such preset, not only for those of
    # one sample per prompt: presets compared on one split (a leaderboard) must keep the same prompts at any scale
    two = images and exp.preservation in ("fid", "kid")
    cfg["samples_per_prompt"] = scaled_count(cfg["samples_per_prompt"], factor, 2 if two else 1)
    least = 2 if two else 1
    prompts = cfg["prompts"]
    for role in ("source", "target"):
        if role in prompts:
            prompts[role] = _prompt_set(exp, ("prompts", role), prompts[role], factor, least)
    for group in ("unrelated", "extra"):
        for concept, spec in prompts.get(group, {}).items():
            prompts[group][concept] = _prompt_set(exp, ("prompts", group, concept), spec, factor, least)

    if images:
        from steercore.models.registry import resolve_spec

        cfg["steps"] = scaled_count(cfg["steps"] or resolve_spec(cfg["model"]).steps, factor)
    else:
        cfg["max_new_tokens"] = scaled_count(cfg["max_new_tokens"], factor)
    cfg["cov"]["samples"] = scaled_count(cfg["cov"]["samples"], factor, max(2, cfg["cov"]["shards"]))
    cfg["vectors"]["samples"] = scaled_count(cfg["vectors"]["samples"], factor, 2)
    return replace(exp, cfg=cfg, scale=factor)


def _prompt_set(exp: Experiment, key: tuple[str, ...], spec, factor: float, least: int = 1):
    """The first prompts of one prompt set (a list's, a file's via `limit`), or a generator asked for fewer;
    at least `least` of them."""
    if isinstance(spec, list):
        return spec[:scaled_count(len(spec), factor, least)]
    if "generator" in spec:
        return {**spec, "n": scaled_count(spec.get("n", 8), factor, least)}
    from steercore.experiments.promptsets import read_lines

    try:
        lines = len(read_lines(exp.root_of(*key) / spec["file"]))
    except ConfigError:
        return spec  # a missing or empty file: the preset checks name it with its key
    return {**spec, "limit": scaled_count(min(spec.get("limit", lines), lines), factor, least)}
