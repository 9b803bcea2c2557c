"""The testbed: small text-to-image and language models of real diffusers/transformers classes, trained offline
on procedurally generated worlds (shapes, topics) whose ground truth the testbed scorers measure exactly.

Heavy modules (diffusers, transformers, open_clip) load on first use: `from steercore.testbed import t2i`.
May import: steercore.core, torch, numpy, PIL, and in its model modules diffusers, transformers, open_clip.
"""

from steercore.testbed.shapes import COLOURS, SHAPES, concept_captions, gate_captions, neutral_captions
from steercore.testbed.topics import TOPICS, neutral_instructions, topic_questions

__all__ = ["COLOURS", "SHAPES", "TOPICS", "concept_captions", "gate_captions", "neutral_captions",
           "neutral_instructions", "topic_questions"]
