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


# ---- the job grain: which conditions a job runs, and folders that never mix two configurations

from dataclasses import replace

from steercore.experiments.preset import load_experiment
from steercore.stages.generate import DIGEST_FILE, prepare_condition_folder


def test_jobs_are_conditions_or_packed_methods():
    exp = load_experiment("ci")
    assert exp.packs() and not exp.packs("false") and not load_experiment("sdxl_dogs_cats").packs()
    assert list(exp.job_units("false")) == [c.label for c in exp.conditions]
    packed = exp.job_units()
    assert list(packed) == ["none-0", "casteer-all", "leace-all", "midsteer-all"]
    assert [c.label for c in packed["midsteer-all"]] == ["midsteer-1", "midsteer-2"]
    assert len(load_experiment("sdxl_dogs_cats").job_units()) == 22


def test_digests_follow_exactly_what_a_condition_depends_on():
    exp = load_experiment("ci")
    base, steered = exp.conditions[0], exp.conditions[1]

    def changed(**kw):
        return replace(exp, cfg={**exp.cfg, **kw})

    gen = exp.generation_digest
    assert gen(steered) == load_experiment("ci").generation_digest(steered)  # deterministic
    assert changed(strengths=[1, 2, 5]).generation_digest(steered) == gen(steered)  # another strength
    assert changed(scorers={**exp["scorers"], "preservation": "kid"}).generation_digest(steered) == gen(steered)
    assert changed(batch_size=3).generation_digest(steered) == gen(steered)
    assert changed(clip=True).generation_digest(base) == gen(base)  # the baseline is not steered
    assert changed(clip=True).generation_digest(steered) != gen(steered)
    for key, value in (("guidance", 2.0), ("steps", 4), ("seed", 1), ("samples_per_prompt", 3)):
        assert changed(**{key: value}).generation_digest(base) != gen(base), key
    prompts = {**exp["prompts"], "unrelated": {"green": ["a green circle"]}}
    assert changed(prompts=prompts).generation_digest(base) != gen(base)
    kid = changed(scorers={**exp["scorers"], "preservation": "kid"})
    assert kid.scoring_digest(steered) != exp.scoring_digest(steered)


def test_a_folder_made_under_another_digest_is_emptied(tmp_path):
    folder = tmp_path / "casteer-2"
    (folder / "red").mkdir(parents=True)
    (folder / "red" / "000-0.png").write_bytes(b"old")
    (folder / "red" / ".000-1.png.tmp.png").write_bytes(b"half")
    assert prepare_condition_folder(folder, "aaa", "png") == 1  # no digest recorded: not trusted
    assert (folder / DIGEST_FILE).read_text() == "aaa\n" and not list(folder.glob("red/*"))
    (folder / "red" / "000-0.png").write_bytes(b"new")
    assert prepare_condition_folder(folder, "aaa", "png") == 0  # same digest: a resumed job keeps its files
    assert (folder / "red" / "000-0.png").read_bytes() == b"new"
    assert prepare_condition_folder(folder, "bbb", "png") == 1 and not (folder / "red" / "000-0.png").exists()
