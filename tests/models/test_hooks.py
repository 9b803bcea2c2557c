"""attach_steering / collect_statistics on tiny real pipelines and causal LMs (tests/tiny_models.py)."""

from dataclasses import dataclass

import pytest
import torch

import tiny_models as tm
from steercore.core.errors import ConfigError, ShapeMismatchError, SteerError
from steercore.models.hooks import attach_steering, collect_statistics
from steercore.core.plan import SteeringPlan
from steercore.models.sites import find_sites
from steercore.core.stats import ActivationStats

METHODS = ("casteer", "leace", "midsteer")
PIPES = ("sd", "sdxl", "sana", "pixart", "flux")
LMS = ("llama", "qwen2", "gemma2")
PROMPTS = ["a red cat", "a blue dog on the left"]


def pipe_of(name, tiny_cache, cache={}):  # noqa: B006 - one reloaded pipeline per test module run
    key = (name, str(tiny_cache))
    if key not in cache:
        cache[key] = tm.load_pipeline(name, tiny_cache)
    return cache[key]


def generate(pipe, name, prompt=PROMPTS, n=2, seeds=None, steps=2, output="latent", **kw):
    """Seeded generation; one generator per image when `seeds` is given (batch == unbatched)."""
    if seeds is None:
        gen = torch.Generator().manual_seed(0)
    else:
        gen = [torch.Generator().manual_seed(s) for s in seeds]
    args = dict(tm.CALL_KWARGS[name], **kw)
    return pipe(prompt=prompt, num_images_per_prompt=n, num_inference_steps=steps, generator=gen,
                output_type=output, **args).images


# ------------------------------------------------------------------------------------------ diffusion


@pytest.mark.parametrize("name", PIPES)
def test_every_family_and_method_steers_and_leaves_no_trace(name, tiny_cache):
    pipe = pipe_of(name, tiny_cache)
    processors = dict(pipe.transformer.attn_processors if hasattr(pipe, "transformer") else pipe.unet.attn_processors)
    base = generate(pipe, name)
    before = tm.hook_residue(pipe)
    for method in METHODS:
        plan = tm.random_plan(find_sites(pipe), method, steps=(0, 1))
        with attach_steering(pipe, plan, 0.0):
            zero = generate(pipe, name)
        with attach_steering(pipe, plan, 2.0):
            steered = generate(pipe, name)
        assert torch.equal(zero, base), f"{name}/{method}: strength 0 changed the output"
        assert not torch.allclose(steered, base, atol=1e-6), f"{name}/{method}: steering had no effect"
        assert tm.hook_residue(pipe) == before
    den = pipe.transformer if hasattr(pipe, "transformer") else pipe.unet
    assert {k: type(v) for k, v in den.attn_processors.items()} == {k: type(v) for k, v in processors.items()}
    assert all(den.attn_processors[k] is v for k, v in processors.items())
    assert torch.equal(generate(pipe, name), base)


def recording_plan(pipe, steps=(0, 1)):
    """A plan of fake maps that log (step, site, rows) and leave activations unchanged."""
    log = []

    @dataclass
    class Rec:
        step: int
        site: str
        dim: int

        def edit(self, x, strength):
            log.append((self.step, self.site, x.shape[0]))
            return x

    maps = {(k, s): Rec(k, s, d) for k in steps for s, d in find_sites(pipe).items()}
    return SteeringPlan(maps), log


@pytest.mark.parametrize("name", ["sd", "flux"])
def test_steps_come_from_the_scheduler_and_reset_per_generation(name, tiny_cache):
    pipe = pipe_of(name, tiny_cache)
    plan, log = recording_plan(pipe, steps=(0, 1, 2))
    sites = list(find_sites(pipe))
    with attach_steering(pipe, plan):
        generate(pipe, name, steps=3)
        generate(pipe, name, steps=2)
    expected = [(k, s) for k in (0, 1, 2) for s in sites] + [(k, s) for k in (0, 1) for s in sites]
    assert [(k, s) for k, s, _ in log] == expected
    with attach_steering(pipe, plan), pytest.raises(ConfigError, match="covers steps 0..2"):
        generate(pipe, name, steps=4)
    assert tm.hook_residue(pipe) == []


@pytest.mark.parametrize("name", ["sd", "sdxl", "sana", "pixart"])
def test_cfg_steers_only_the_conditional_half(name, tiny_cache):
    pipe = pipe_of(name, tiny_cache)
    plan, log = recording_plan(pipe, steps=(0,))
    with attach_steering(pipe, plan):
        generate(pipe, name, steps=1)
    assert {rows for _, _, rows in log} == {4}  # 2 prompts × 2 images of the 8-row CFG batch
    # the unconditional half of the first noise prediction is unchanged, the conditional half is not
    den = pipe.transformer if hasattr(pipe, "transformer") else pipe.unet
    outputs = []
    handle = den.register_forward_hook(
        lambda m, a, out: outputs.append((out[0] if isinstance(out, tuple) else out.sample).clone()))
    try:
        generate(pipe, name, steps=1)
        with attach_steering(pipe, tm.random_plan(find_sites(pipe), "midsteer"), 3.0):
            generate(pipe, name, steps=1)
    finally:
        handle.remove()
    base, steered = outputs
    assert torch.equal(steered[:4], base[:4])
    assert not torch.allclose(steered[4:], base[4:], atol=1e-6)


def test_flux_true_cfg_negative_prompt_call_is_not_steered(tiny_cache):
    pipe = pipe_of("flux", tiny_cache)
    plan, log = recording_plan(pipe, steps=(0, 1))
    with attach_steering(pipe, plan):
        generate(pipe, "flux", steps=2, negative_prompt=["a pig", "a pig"], true_cfg_scale=2.0)
    sites = list(find_sites(pipe))
    assert [(k, s) for k, s, _ in log] == [(k, s) for k in (0, 1) for s in sites]  # one steered call per step


def test_without_cfg_the_whole_batch_is_steered(tiny_cache):
    pipe = pipe_of("sd", tiny_cache)
    plan, log = recording_plan(pipe, steps=(0,))
    with attach_steering(pipe, plan):
        generate(pipe, "sd", steps=1, guidance_scale=1.0)  # turbo-style: no CFG, batch of 4 is not halved
    assert {rows for _, _, rows in log} == {4}
    base = generate(pipe, "sd", steps=1, guidance_scale=0.0)
    with attach_steering(pipe, tm.random_plan(find_sites(pipe), "casteer"), 3.0):
        steered = generate(pipe, "sd", steps=1, guidance_scale=0.0)
    assert all(not torch.allclose(steered[i], base[i], atol=1e-6) for i in range(4))


@pytest.mark.parametrize("name", PIPES)
def test_per_sample_strengths_in_a_batch_equal_unbatched_runs(name, tiny_cache):
    pipe = pipe_of(name, tiny_cache)
    plan = tm.random_plan(find_sites(pipe), "leace", steps=(0,))
    strengths = torch.tensor([0.0, 1.0, 2.0, 3.0])
    prompt_of = [PROMPTS[0], PROMPTS[0], PROMPTS[1], PROMPTS[1]]  # the pipeline's output order
    # diffusers 0.42.1 SanaPipeline repeats the prompt attention masks as [m0, m1, m0, m1] but the embeddings as
    # [e0, e0, e1, e1], so several prompts × several images per prompt are wrong upstream: pass each image's prompt
    batch = dict(prompt=prompt_of, n=1) if name == "sana" else dict(n=2)
    with attach_steering(pipe, plan, strengths):
        batched = generate(pipe, name, seeds=[10, 11, 12, 13], **batch)
    for i in range(4):
        with attach_steering(pipe, plan, float(strengths[i])):
            single = generate(pipe, name, prompt=[prompt_of[i]], n=1, seeds=[10 + i])
        torch.testing.assert_close(batched[i], single[0], atol=2e-5, rtol=1e-4)
    base = generate(pipe, name, seeds=[10, 11, 12, 13], **batch)
    torch.testing.assert_close(batched[0], base[0], atol=2e-5, rtol=1e-4)
    assert not torch.allclose(batched[3], base[3], atol=1e-5)


@pytest.mark.xfail(reason="diffusers 0.42.1 SanaPipeline: prompt attention masks repeated in the wrong order "
                   "for several prompts × several images per prompt (upstream bug)", strict=False)
def test_sana_several_prompts_times_images_upstream(tiny_cache):
    pipe = pipe_of("sana", tiny_cache)
    batched = generate(pipe, "sana", n=2, seeds=[10, 11, 12, 13])
    single = generate(pipe, "sana", prompt=[PROMPTS[0]], n=1, seeds=[11])
    torch.testing.assert_close(batched[1], single[0], atol=2e-5, rtol=1e-4)


def test_a_0d_tensor_strength_is_one_number_for_the_whole_batch(tiny_cache):
    pipe = pipe_of("sd", tiny_cache)
    plan = tm.random_plan(find_sites(pipe), "leace", steps=(0,))
    with attach_steering(pipe, plan, 2.0):
        as_float = generate(pipe, "sd", steps=1)
    with attach_steering(pipe, plan, torch.tensor(2.0)):  # was repeated to shape [1]: a mismatch for 4 rows
        as_tensor = generate(pipe, "sd", steps=1)
    torch.testing.assert_close(as_tensor, as_float, atol=0, rtol=0)


def test_strength_validation(tiny_cache):
    pipe = pipe_of("sd", tiny_cache)
    plan = tm.random_plan(find_sites(pipe), "casteer")
    with pytest.raises(ConfigError, match=">= 0"):
        with attach_steering(pipe, plan, -1.0):
            pass
    with pytest.raises(ShapeMismatchError, match="per-sample strength has 3"):
        with attach_steering(pipe, plan, torch.tensor([1.0, 1.0, 1.0])):
            generate(pipe, "sd", steps=1)
    assert tm.hook_residue(pipe) == []  # an error inside the block still removes everything


def test_plan_for_another_model_is_refused(tiny_cache):
    pipe = pipe_of("sd", tiny_cache)
    with pytest.raises(ConfigError, match="sana.0"):
        with attach_steering(pipe, tm.random_plan({"sana.0": 8}, "casteer")):
            pass
    with pytest.raises(ShapeMismatchError, match="D=32 in the model but D=7"):
        with attach_steering(pipe, tm.random_plan({"down.0": 7}, "casteer")):
            pass


def test_steer_only_up_skips_down_blocks(tiny_cache):
    pipe = pipe_of("sd", tiny_cache)
    plan, log = recording_plan(pipe, steps=(0,))
    with attach_steering(pipe, plan, steer_only_up=True):
        generate(pipe, "sd", steps=1)
    assert {site.split(".")[0] for _, site, _ in log} == {"mid", "up"}


def test_slicing_fused_qkv_and_processor_swaps_keep_steering(tiny_cache):
    from diffusers.models.attention_processor import AttnProcessor

    pipe = tm.load_pipeline("sd", tiny_cache)
    plan = tm.random_plan(find_sites(pipe), "midsteer", steps=(0,))
    base = generate(pipe, "sd", steps=1)
    with attach_steering(pipe, plan, 2.0):
        ref = generate(pipe, "sd", steps=1)
    pipe.enable_attention_slicing(1)
    pipe.unet.fuse_qkv_projections()
    with attach_steering(pipe, plan, 2.0):
        sliced = generate(pipe, "sd", steps=1)
        pipe.unet.set_attn_processor(AttnProcessor())  # swapped inside the block: the module hook stays
        swapped = generate(pipe, "sd", steps=1)
    for out in (sliced, swapped):
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(out, base, atol=1e-5)


def test_statistics_of_a_steered_pipeline_nest(tiny_cache):
    pipe = pipe_of("sd", tiny_cache)
    plain, steered = ActivationStats("concept"), ActivationStats("concept")
    with collect_statistics(pipe, plain):
        generate(pipe, "sd", steps=2)
    with attach_steering(pipe, tm.random_plan(find_sites(pipe), "casteer"), 3.0):
        with collect_statistics(pipe, steered):
            generate(pipe, "sd", steps=2)
        assert "step" in vars(pipe.scheduler)  # the inner exit leaves the outer attachment in place
    assert steered.steps == plain.steps == [0, 1]
    assert not torch.allclose(steered.mean(1, "up.2"), plain.mean(1, "up.2"))
    assert tm.hook_residue(pipe) == []


def test_replacing_the_scheduler_inside_the_block_is_refused(tiny_cache):
    from diffusers import DDIMScheduler

    pipe = tm.load_pipeline("sd", tiny_cache)
    with attach_steering(pipe, tm.random_plan(find_sites(pipe), "casteer")):
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        with pytest.raises(SteerError, match="scheduler was replaced"):
            generate(pipe, "sd", steps=1)


@pytest.mark.parametrize("name", PIPES)
def test_collect_statistics_per_step_conditional_half_image_tokens(name, tiny_cache):
    pipe = pipe_of(name, tiny_cache)
    stats = ActivationStats("neutral", "all")
    with collect_statistics(pipe, stats):
        generate(pipe, name, steps=2)
    assert stats.steps == [0, 1]
    assert stats.sites == find_sites(pipe)
    counts = {site: stats.count(0, site) for site in stats.sites}
    assert all(stats.count(1, site) == counts[site] for site in stats.sites)
    if name == "flux":  # 4 images × 8×8 packed latents: image tokens only, text tokens excluded
        assert set(counts.values()) == {4 * 64}
    if name == "sd":  # 4 images (the conditional half only) × tokens at 8×8 and 4×4
        assert counts == {"down.0": 256, "down.1": 256, "mid.0": 64, "up.0": 256, "up.1": 256, "up.2": 256}
    first = next(iter(find_sites(pipe)))
    avg = ActivationStats("concept", "average")
    with collect_statistics(pipe, avg, sites=[first]):
        generate(pipe, name, steps=1)
    assert list(avg.sites) == [first] and avg.count(0, first) == 4  # one row per conditional sample
    assert tm.hook_residue(pipe) == []


def test_cache_hooks_that_skip_blocks_are_refused(tiny_cache):
    from diffusers import FirstBlockCacheConfig

    pipe = tm.load_pipeline("flux", tiny_cache)
    pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=0.2))
    with pytest.raises(SteerError, match="disable it first"):
        with attach_steering(pipe, tm.random_plan(find_sites(pipe), "casteer")):
            pass


# ------------------------------------------------------------------------------------------ LLMs


def lm_of(family, tiny_cache, cache={}):  # noqa: B006
    key = (family, str(tiny_cache))
    if key not in cache:
        cache[key] = tm.load_lm(family, tiny_cache)
    return cache[key]


QUESTIONS = ["what is a red cat", "tell me a short story about the dog please"]


def sample(model, enc, **kw):
    torch.manual_seed(0)
    return model.generate(**enc, max_new_tokens=10, do_sample=True, pad_token_id=0, output_scores=True,
                          return_dict_in_generate=True, **kw)


@pytest.mark.parametrize("family", LMS)
@pytest.mark.parametrize("llm_site", ["self_attn", "mlp", "residual"])
def test_lm_every_method_steers_seeded_and_leaves_no_trace(family, llm_site, tiny_cache):
    model, tok = lm_of(family, tiny_cache)
    enc = tok(QUESTIONS, return_tensors="pt", padding=True)
    base = sample(model, enc)
    for method in METHODS:
        plan = tm.random_plan(find_sites(model, llm_site), method, shift=6.0)
        with attach_steering(model, plan, 0.0, llm_site=llm_site):
            zero = sample(model, enc)
        with attach_steering(model, plan, 3.0, llm_site=llm_site):
            steered = sample(model, enc)
            again = sample(model, enc)
        assert torch.equal(zero.sequences, base.sequences)
        assert all(torch.equal(a, b) for a, b in zip(zero.scores, base.scores))
        assert torch.equal(steered.sequences, again.sequences)  # seeded sampling is reproducible
        assert not torch.allclose(steered.scores[0], base.scores[0])  # the prefill is steered too
        assert tm.hook_residue(model) == []
    assert torch.equal(sample(model, enc).sequences, base.sequences)


@pytest.mark.parametrize("family", LMS)
def test_lm_right_padding_is_respected(family, tiny_cache):
    model, tok = lm_of(family, tiny_cache)
    tok.padding_side = "right"
    try:
        enc = tok(QUESTIONS, return_tensors="pt", padding=True)
    finally:
        tok.padding_side = "left"
    plan = tm.random_plan(find_sites(model), "midsteer", shift=6.0)
    stats = ActivationStats("neutral")
    with attach_steering(model, plan, 2.0):
        batched = model(**enc).logits
        for i, q in enumerate(QUESTIONS):
            single = model(**tok([q], return_tensors="pt")).logits[0]
            n = single.shape[0]
            torch.testing.assert_close(batched[i, :n], single, atol=1e-5, rtol=1e-5)
    with collect_statistics(model, stats):
        model(**enc)
    assert stats.count(0, "layers.0.self_attn") == int(enc["attention_mask"].sum())  # padding not counted


@pytest.mark.parametrize("family", LMS)
def test_lm_left_padding_padded_positions_untouched_and_generation_matches(family, tiny_cache):
    model, tok = lm_of(family, tiny_cache)
    enc = tok(QUESTIONS, return_tensors="pt", padding=True)
    assert enc["attention_mask"][0, 0] == 0  # the short question is left-padded
    plan = tm.random_plan(find_sites(model), "leace", shift=6.0)
    seen = []
    attn = model.model.layers[0].self_attn

    def run():  # a probe registered after the steering hook sees the steered output
        h = attn.register_forward_hook(lambda m, a, out: seen.append(out[0].detach().clone()))
        try:
            model(**enc)
        finally:
            h.remove()

    run()
    with attach_steering(model, plan, 3.0):
        run()
    pad = ~enc["attention_mask"].bool()
    assert torch.equal(seen[1][pad], seen[0][pad])
    assert not torch.allclose(seen[1][~pad], seen[0][~pad])
    with attach_steering(model, plan, 3.0):
        batched = model.generate(**enc, max_new_tokens=10, do_sample=False, pad_token_id=0)
        for i, q in enumerate(QUESTIONS):
            one = tok([q], return_tensors="pt")
            single = model.generate(**one, max_new_tokens=10, do_sample=False, pad_token_id=0)
            assert torch.equal(batched[i, -10:], single[0, -10:])


@pytest.mark.parametrize("family", ["llama"])
def test_lm_generated_only_and_per_row_strengths(family, tiny_cache):
    model, tok = lm_of(family, tiny_cache)
    enc = tok(QUESTIONS, return_tensors="pt", padding=True)
    plan = tm.random_plan(find_sites(model), "casteer", shift=6.0)
    base = sample(model, enc)
    with attach_steering(model, plan, 3.0, generated_only=True):
        prefill = model(**enc).logits
        steered = sample(model, enc)
    assert torch.equal(prefill, model(**enc).logits)
    assert torch.equal(steered.scores[0], base.scores[0])  # the first token comes from the unsteered prefill
    assert not torch.equal(torch.stack(steered.scores[1:]), torch.stack(base.scores[1:len(steered.scores)]))
    with attach_steering(model, plan, torch.tensor([0.0, 3.0])):
        logits = model(**enc).logits
    ref = model(**enc).logits
    assert torch.equal(logits[0], ref[0]) and not torch.allclose(logits[1], ref[1])
    with pytest.raises(ConfigError, match="generated_only"):
        with attach_steering(pipe_of("sd", tiny_cache), tm.random_plan({"up.0": 32}, "casteer"), generated_only=True):
            pass


def test_testbed_shapes_pipeline_is_steered_like_sd():
    from steercore.testbed.t2i import build_pipeline

    pipe = build_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    sites = find_sites(pipe)
    assert all(s.split(".")[0] in ("down", "mid", "up") for s in sites)
    plan, log = recording_plan(pipe, steps=(0, 1))
    with attach_steering(pipe, plan):
        pipe(prompt=["a red circle", "a blue square"], num_images_per_prompt=2, num_inference_steps=2,
             guidance_scale=4.0, output_type="latent")
    assert [(k, s) for k, s, _ in log] == [(k, s) for k in (0, 1) for s in sites]
    assert {rows for _, _, rows in log} == {4}  # the conditional half of the CFG batch
    assert tm.hook_residue(pipe) == []


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_lm_positions_steer_exactly_the_intended_positions(padding_side, tiny_cache):
    """Prefill: 'all' changes every valid position, 'last_prompt' only each row's last prompt token,
    'generated' none; a decoding call (non-empty KV cache) is steered under every option. Padding never."""
    model, tok = lm_of("llama", tiny_cache)
    side = tok.padding_side
    tok.padding_side = padding_side
    try:
        enc = tok(QUESTIONS, return_tensors="pt", padding=True)
    finally:
        tok.padding_side = side
    valid = enc["attention_mask"].bool()  # [B, T]
    last = torch.zeros_like(valid)
    for b, row in enumerate(valid):
        last[b, int(row.nonzero().max())] = True
    plan = tm.random_plan(find_sites(model), "leace", shift=6.0)  # unclipped: every steered row moves
    attn = model.model.layers[0].self_attn  # its output depends on nothing that steering changes upstream

    def prefill_and_decode():
        seen = []
        h = attn.register_forward_hook(lambda m, a, out: seen.append(out[0].detach().clone()))
        try:
            out = model(**enc, use_cache=True)
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)  # [B, 1]
            mask = torch.cat([enc["attention_mask"], torch.ones_like(nxt)], 1)
            model(input_ids=nxt, attention_mask=mask, past_key_values=out.past_key_values, use_cache=True)
        finally:
            h.remove()
        return seen  # [prefill [B, T, D], decode [B, 1, D]]

    base = prefill_and_decode()
    expected = {"all": valid, "last_prompt": last, "generated": torch.zeros_like(valid)}
    for positions, changed_ok in expected.items():
        with attach_steering(model, plan, 3.0, llm_positions=positions):
            pre, dec = prefill_and_decode()
        changed = (pre != base[0]).any(-1)  # [B, T]
        assert torch.equal(changed, changed_ok), positions
        # the decoding call steps from another (steered) cache, so compare it with its own unsteered value:
        # its layer-0 attention output reads the cache, which steering of layer 0 itself never touches
        assert (dec != base[1]).any(-1).all(), positions
    with attach_steering(model, plan, 3.0, generated_only=True):
        pre, _ = prefill_and_decode()
    assert torch.equal(pre, base[0])  # generated_only=True is llm_positions='generated'
    with pytest.raises(ConfigError, match="contradicts llm_positions: last_prompt"):
        with attach_steering(model, plan, 3.0, generated_only=True, llm_positions="last_prompt"):
            pass
    with pytest.raises(ConfigError, match="unknown llm_positions 'first'"):
        with attach_steering(model, plan, 3.0, llm_positions="first"):
            pass
    assert tm.hook_residue(model) == []
