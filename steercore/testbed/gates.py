"""Quality gates of the testbed models, measured with the testbed scorers (the tests and the README use them).

- t2i: colour / shape / both accuracy of generated images, classified zero-shot by `TestbedImageScorer`.
- lm: fraction of answers to topic questions that `TopicScorer` classifies as the question's topic.
- clip: zero-shot colour and shape accuracy on held-out clean renders.
"""

from __future__ import annotations

import numpy as np
import torch

from steercore.testbed import shapes, topics
from steercore.testbed.lm import chat_prompt
from steercore.testbed.scorers import TestbedImageScorer, TopicScorer

T2I_GATES = {"colour": 0.95, "shape": 0.85, "both": 0.80}
LM_GATE = 0.95
CLIP_GATE = 0.98
HELD_OUT_SEED = 10**6  # clean renders for the CLIP gate come from seeds ≥ this; training never draws seeds


@torch.no_grad()
def t2i_accuracy(pipe, scorer: TestbedImageScorer, samples_per_caption: int = 32, seed: int = 0,
                 num_inference_steps: int = 20, guidance_scale: float = 4.0, batch_captions: int = 12) -> dict:
    """Generate `samples_per_caption` images of each 'a {colour} {shape}' caption (image k of caption c uses
    generator seed `seed + 1000·c + k`) and return colour/shape/both accuracies and per-caption 'both'."""
    captions = shapes.gate_captions()
    colour_hits, shape_hits, per_caption = [], [], {}
    for start in range(0, len(captions), batch_captions):
        chunk = captions[start:start + batch_captions]
        gens = [torch.Generator().manual_seed(seed + 1000 * (start + c) + k)
                for c in range(len(chunk)) for k in range(samples_per_caption)]
        images = pipe(chunk, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                      num_images_per_prompt=samples_per_caption, generator=gens).images
        colours = scorer.classify(images, list(shapes.COLOURS))
        kinds = scorer.classify(images, list(shapes.SHAPES))
        for c, caption in enumerate(chunk):
            want = shapes.caption_attributes(caption)
            sl = slice(c * samples_per_caption, (c + 1) * samples_per_caption)
            col = [x == want["colour"] for x in colours[sl]]
            shp = [x == want["shape"] for x in kinds[sl]]
            colour_hits += col
            shape_hits += shp
            per_caption[caption] = float(np.mean([a and b for a, b in zip(col, shp)]))
    both = [a and b for a, b in zip(colour_hits, shape_hits)]
    return {"colour": float(np.mean(colour_hits)), "shape": float(np.mean(shape_hits)),
            "both": float(np.mean(both)), "n": len(both), "per_caption": per_caption}


def clip_zero_shot(scorer: TestbedImageScorer, n: int = 600, seed: int = HELD_OUT_SEED) -> dict:
    """Zero-shot colour and shape accuracy on n held-out clean renders (seeds seed..seed+n-1)."""
    scenes = [shapes.scene(seed + i) for i in range(n)]
    images = shapes.to_pil(shapes.render(scenes))
    colours = scorer.classify(images, list(shapes.COLOURS))
    kinds = scorer.classify(images, list(shapes.SHAPES))
    return {"colour": float(np.mean([c == s.colour for c, s in zip(colours, scenes)])),
            "shape": float(np.mean([k == s.shape for k, s in zip(kinds, scenes)])), "n": n}


@torch.no_grad()
def generate_answers(model, tokenizer, instructions: list[str], seed: int = 0, max_new_tokens: int = 48,
                     do_sample: bool = True) -> list[str]:
    """Chat-formatted generation (sampling at temperature 1 with a fixed torch seed); the decoded answers."""
    prompts = [chat_prompt(tokenizer, q) for q in instructions]
    enc = tokenizer(prompts, padding=True, add_special_tokens=False, return_tensors="pt")
    torch.manual_seed(seed)
    out = model.generate(**enc, do_sample=do_sample, max_new_tokens=max_new_tokens, top_k=0, top_p=1.0,
                         temperature=1.0, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    return tokenizer.batch_decode(out[:, enc.input_ids.shape[1]:], skip_special_tokens=True)


def lm_topic_accuracy(model, tokenizer, questions_per_topic: int = 20, seed: int = 0) -> dict:
    """Fraction of sampled answers to `topic_questions(topic, n, seed)` that TopicScorer classifies as `topic`."""
    scorer = TopicScorer()
    per_topic = {}
    for topic in topics.TOPICS:
        answers = generate_answers(model, tokenizer, topics.topic_questions(topic, questions_per_topic, seed),
                                   seed=seed)
        per_topic[topic] = float(np.mean([c == topic for c in scorer.classify(answers, list(topics.TOPICS))]))
    return {"accuracy": float(np.mean(list(per_topic.values()))), "per_topic": per_topic,
            "n": questions_per_topic * len(topics.TOPICS)}
