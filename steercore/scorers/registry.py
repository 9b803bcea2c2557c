"""The concept scorers by name, declared once: the experiment schema, the preset checks and the score stage
read them from `CONCEPT_SCORERS`. Each builds lazily (heavy libraries load only when a scorer is used) and
has `score(items, concept) -> list[float]`, one value per item, in order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from steercore.core.errors import ConfigError


@dataclass(frozen=True)
class ScorerSpec:
    name: str
    outputs: str
    """What it scores: 'image' or 'text'."""
    build: Callable[..., Any]
    """build(device=, batch_size=, judge_model=) → the scorer."""


def _testbed_clip(*, device, batch_size, judge_model):
    from steercore.testbed.scorers import TestbedImageScorer

    return TestbedImageScorer(device=device)


def _testbed_topics(*, device, batch_size, judge_model):
    from steercore.testbed.scorers import TopicScorer

    return TopicScorer()


def _clip(*, device, batch_size, judge_model):
    from steercore.scorers.clip_score import ClipScorer

    return ClipScorer(device=device, batch_size=batch_size)


def _judge(*, device, batch_size, judge_model):
    from steercore.scorers.judge import Judge

    return Judge(judge_model, device=device, batch_size=batch_size)


def _detoxify(*, device, batch_size, judge_model):
    from steercore.scorers.toxicity import Toxicity

    return Toxicity(device=device, batch_size=batch_size)


CONCEPT_SCORERS: dict[str, ScorerSpec] = {s.name: s for s in [
    ScorerSpec("testbed-clip", "image", _testbed_clip),
    ScorerSpec("testbed-topics", "text", _testbed_topics),
    ScorerSpec("clip", "image", _clip),
    ScorerSpec("judge", "text", _judge),
    ScorerSpec("detoxify", "text", _detoxify),
]}


def make_concept_scorer(name: str, *, device: str, batch_size: int, judge_model: str | None = None):
    """The concept scorer by name."""
    try:
        spec = CONCEPT_SCORERS[name]
    except KeyError:
        raise ConfigError(f"unknown concept scorer '{name}'; choose one of {', '.join(CONCEPT_SCORERS)}") from None
    return spec.build(device=device, batch_size=batch_size, judge_model=judge_model)
