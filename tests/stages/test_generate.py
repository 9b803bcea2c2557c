"""The generate stage: a sample does not depend on its batch, resume skips finished files, answers are seeded."""

import numpy as np
import pytest
import torch

from steercore.stages.generate import Sample, generate_images, sample_answers
from tiny_models import load_lm, load_pipeline, random_plan


@pytest.fixture(scope="module")
def sd(tiny_cache):
    return load_pipeline("sd", tiny_cache)


def pixels(images):
    return [np.asarray(im, dtype=np.int16) for im in images]


def test_batched_strengths_give_the_images_of_unbatched_runs(sd):
    from steercore.models.sites import find_sites

    plan = random_plan(find_sites(sd), "midsteer")
    samples = [Sample("dog", i % 2, p, seed) for i, (p, seed) in
               enumerate([("a dog", 0), ("a cat on a mat", 1), ("a dog", 2), ("a red car", 3)])]
    strengths = [0.0, 1.0, 2.5, 4.0]
    kw = dict(steps=2, guidance=5.0)
    batched = pixels(generate_images(sd, samples, strengths, plan=plan, **kw))
    for s, beta, got in zip(samples, strengths, batched):
        alone = pixels(generate_images(sd, [s], [beta], plan=plan, **kw))[0]
        assert np.array_equal(got, alone), (s, beta)
    unsteered = pixels(generate_images(sd, [samples[0], samples[3]], None, **kw))
    assert np.array_equal(batched[0], unsteered[0])  # strength 0 is the unsteered image
    assert np.abs(batched[3] - unsteered[1]).max() > 10  # strength 4 is not


def test_answers_are_seeded_and_independent_of_the_batch(tiny_cache):
    model, tok = load_lm("llama", tiny_cache)
    from steercore.models.sites import find_sites

    plan = random_plan(find_sites(model), "leace")
    prompts = ["tell me about dogs", "cats", "a long question about the weather today"]
    kw = dict(model_name="tiny-llama", max_new_tokens=6, temperature=1.0, plan=plan, strengths=[0.0, 2.0, 1.0])
    a = sample_answers(model, tok, prompts, [0, 1, 2], **kw)
    b = sample_answers(model, tok, prompts, [0, 1, 2], **kw)
    assert a == b  # reproducible
    for i in range(3):
        one = sample_answers(model, tok, [prompts[i]], [i], **{**kw, "strengths": [kw["strengths"][i]]})
        assert one == [a[i]]
    c = sample_answers(model, tok, prompts, [5, 6, 7], **kw)
    assert c != a  # other seeds, other samples
