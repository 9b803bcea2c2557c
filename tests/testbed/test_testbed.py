"""Tests of the testbed: worlds, pipeline contract, training, shipped weights and their quality gates."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from steercore.core.errors import ConfigError
from steercore.testbed import gates, shapes, topics
from steercore.testbed.lm import build_tokenizer as build_lm_tokenizer
from steercore.testbed.lm import chat_prompt, load_lm
from steercore.testbed.scorers import TestbedImageScorer, TopicScorer
from steercore.testbed.t2i import ShapesPipeline, build_pipeline, images_to_latents, latents_to_images, load_pipeline
from steercore.testbed.train import META_FILE, train


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def image_scorer():
    return TestbedImageScorer()


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline()


@pytest.fixture(scope="module")
def lm():
    return load_lm()


# --- worlds ---------------------------------------------------------------------------------------------


def test_shapes_world_is_deterministic():
    a, cap_a = shapes.render_pil(7)
    b, cap_b = shapes.render_pil(7)
    assert cap_a == cap_b and np.array_equal(np.asarray(a), np.asarray(b))
    assert shapes.neutral_captions(20, 3) == shapes.neutral_captions(20, 3)
    assert shapes.concept_captions("red", 20, 3) == shapes.concept_captions("red", 20, 3)
    assert shapes.neutral_captions(20, 3) != shapes.neutral_captions(20, 4)


def test_shapes_captions_state_the_scene():
    for seed in range(50):
        s = shapes.scene(seed)
        attrs = shapes.caption_attributes(s.caption(np.random.default_rng(seed), p_optional=1.0))
        assert attrs["colour"] == s.colour and attrs["shape"] == s.shape
        assert attrs.get("size") == s.size_word and attrs.get("side") == s.side_word
    assert all("blue" in c.split() for c in shapes.concept_captions("blue", 30, 0))
    assert all("square" in c.split() for c in shapes.concept_captions("square", 30, 0))
    with pytest.raises(ConfigError, match="purple"):
        shapes.concept_captions("purple", 3, 0)


def test_shapes_render_draws_the_colour_on_a_dark_background():
    s = shapes.scene(11)
    img = (shapes.render([s])[0] + 1) / 2  # (3, 32, 32) in [0, 1]
    centre = img[:, int(s.cy), int(s.cx)]
    assert torch.allclose(centre, torch.tensor(s.rgb), atol=1e-4)
    assert img[:, 0, 0].max() <= 0.13  # a corner is background


def test_topics_world_is_deterministic_and_on_topic():
    assert topics.topic_questions("horses", 10, 0) == topics.topic_questions("horses", 10, 0)
    assert topics.neutral_instructions(10, 0) == topics.neutral_instructions(10, 0)
    scorer = TopicScorer()
    rng = np.random.default_rng(0)
    for _ in range(50):
        q, a, topic = topics.dialogue(rng)
        assert scorer.score([a], topic) == [10.0]
        assert scorer.classify([a], list(topics.TOPICS)) == [topic]
    assert all(scorer.score([q], "horses")[0] > 0 for q in topics.topic_questions("horses", 20, 1))
    assert scorer.score(topics.neutral_instructions(20, 0), "horses") == [0.0] * 20


def test_topic_scorer_definition():
    scorer = TopicScorer()
    # content words: horse, gallop, engine, roar (4); horses vocabulary: horse, gallop → 10 · 2/4
    assert scorer.score(["the horse can gallop and the engine can roar ."], "horses") == [5.0]
    assert scorer.score(["the and ."], "horses") == [0.0]
    with pytest.raises(ConfigError, match="zebras"):
        scorer.score(["x"], "zebras")


def test_lm_tokenizer_chat_template_round_trips():
    tok = build_lm_tokenizer()
    prompt = chat_prompt(tok, "tell me about the horse .")
    assert prompt == "<s><|user|> tell me about the horse . <|assistant|>"
    ids = tok(prompt, add_special_tokens=False).input_ids
    assert tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True).split() == "tell me about the horse .".split()


# --- pipeline contract (untrained weights, fast) --------------------------------------------------------


def test_pixel_unshuffle_latents_are_lossless():
    x = shapes.render([shapes.scene(i) for i in range(3)])
    z = images_to_latents(x)
    assert z.shape == (3, 12, 16, 16)
    assert torch.equal(latents_to_images(z), x)


def test_pipeline_batches_like_stable_diffusion(tmp_path):
    pipe = build_pipeline(0)
    pipe.set_progress_bar_config(disable=True)
    seen = []
    pipe.unet.register_forward_pre_hook(lambda m, args, kw: seen.append(kw["encoder_hidden_states"].clone()),
                                        with_kwargs=True)
    gens = lambda *seeds: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    one = pipe("a red circle", num_inference_steps=3, generator=gens(5), output_type="latent").images
    assert pipe.do_classifier_free_guidance and seen[0].shape[0] == 2
    uncond = pipe.encode_prompt([""])[0]
    assert torch.equal(seen[0][0], uncond) and not torch.equal(seen[0][1], uncond)  # [uncond, cond]
    both = pipe(["a blue square", "a red circle"], num_inference_steps=3, generator=gens(9, 5),
                output_type="latent").images
    # per-sample generators: an image does not depend on the batch it is in (up to float rounding)
    assert torch.allclose(both[1], one[0], rtol=1e-4, atol=1e-4)
    seen.clear()
    pipe("a red circle", num_inference_steps=3, guidance_scale=1.0, generator=gens(5))
    assert seen[0].shape[0] == 1  # no CFG at guidance 1
    calls = []
    pipe("a red circle", num_inference_steps=4, generator=gens(5),
         callback_on_step_end=lambda p, i, t, kw: calls.append(i) or kw)
    assert calls == [0, 1, 2, 3]
    pipe.save_pretrained(tmp_path / "p")
    again = ShapesPipeline.from_pretrained(tmp_path / "p")
    again.set_progress_bar_config(disable=True)
    reloaded = again("a red circle", num_inference_steps=3, generator=gens(5), output_type="latent").images
    assert torch.equal(reloaded, one)
    image = pipe("a red circle", num_inference_steps=3, generator=gens(5)).images[0]
    assert image.size == (32, 32) and image.mode == "RGB"


# --- training -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["t2i", "lm", "clip"])
def test_short_training_lowers_the_loss_and_stamps_metadata(tmp_path, model):
    result = train(model, tmp_path / model, steps=30, warmup=5, max_seconds=50, progress=False)
    losses = result["losses"]
    assert np.mean(losses[-5:]) < losses[0]
    meta = json.loads((tmp_path / model / META_FILE).read_text())
    assert meta["seed"] == 0 and meta["steps"] == result["steps"] and meta["git_commit"]
    path = next((tmp_path / model).rglob("*.safetensors"))
    with safe_open(path, "pt") as f:
        assert f.metadata()["steps"] == str(result["steps"]) and "command" in f.metadata()


# --- shipped weights and gates --------------------------------------------------------------------------


def test_shipped_weights_carry_their_training_metadata():
    from steercore.testbed.t2i import WEIGHTS

    for name in ("t2i", "lm", "clip"):
        meta = json.loads((WEIGHTS / name / META_FILE).read_text())
        assert {"command", "seed", "steps", "git_commit"} <= meta.keys()
        assert sum(p.stat().st_size for p in (WEIGHTS / name).rglob("*") if p.is_file()) < 8e6


def test_image_scorer_classifies_clean_renders(image_scorer):
    acc = gates.clip_zero_shot(image_scorer, n=120)
    assert acc["colour"] >= gates.CLIP_GATE and acc["shape"] >= gates.CLIP_GATE
    images = [shapes.render_pil(i)[0] for i in range(40)]
    red = [shapes.scene(i).colour == "red" for i in range(40)]
    scores = np.array(image_scorer.score(images, "red"))
    assert (scores >= 0).all() and scores[red].min() > scores[~np.array(red)].max()
    assert image_scorer.features(images[:3]).shape == (3, image_scorer.model.visual.output_dim)


def test_shipped_t2i_meets_the_gates_on_a_small_sample(pipe, image_scorer):
    acc = gates.t2i_accuracy(pipe, image_scorer, samples_per_caption=8)
    assert all(acc[k] >= v for k, v in gates.T2I_GATES.items()), acc


def test_shipped_lm_stays_on_topic_on_a_small_sample(lm):
    acc = gates.lm_topic_accuracy(*lm, questions_per_topic=6)
    assert acc["accuracy"] >= gates.LM_GATE, acc


@pytest.mark.slow
def test_full_gates(pipe, image_scorer, lm):
    t2i = gates.t2i_accuracy(pipe, image_scorer, samples_per_caption=32, seed=1)
    assert all(t2i[k] >= v for k, v in gates.T2I_GATES.items()), t2i
    clip = gates.clip_zero_shot(image_scorer, n=600)
    assert clip["colour"] >= gates.CLIP_GATE and clip["shape"] >= gates.CLIP_GATE, clip
    text = gates.lm_topic_accuracy(*lm, questions_per_topic=25, seed=1)
    assert text["accuracy"] >= gates.LM_GATE, text
