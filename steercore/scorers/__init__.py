"""Scorers of the score stage: CLIP concept score, FID/KID, Detoxify toxicity, LLM judge, consistency.

Concept scorers are declared in `registry` and share `score(items, concept) -> list[float]` (one value per
item, in order); each has a batch size, a progress bar, automatic device choice (`device=` overrides) and
weights found through steercore.hub. Heavy libraries load only when a scorer is built.
May import: steercore.core, steercore.hub, steercore.testbed (its scorers), torch and the scorer libraries.
"""
