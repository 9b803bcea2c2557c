"""Folding a single-step rank-one plan into the output linear layers equals hooking it; unfold is bit-exact."""

import pytest
import torch

import tiny_models as tm
from steercore.core.errors import ConfigError, SteerError
from steercore.models.folding import fold, folded, unfold
from steercore.models.hooks import attach_steering
from steercore.models.sites import find_sites

FOLDABLE = ("casteer", "leace", "midsteer")


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}, {
        n: (m.weight, m.bias) for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)}


def assert_restored(module, snap):
    values, params = snap
    after = module.state_dict()
    assert after.keys() == values.keys()
    assert all(torch.equal(after[k], values[k]) for k in values)  # bit-exact
    for n, m in module.named_modules():
        if isinstance(m, torch.nn.Linear):
            assert m.weight is params[n][0] and m.bias is params[n][1]  # the original objects, bias None again


def pipe_call(pipe, name, **kw):
    args = dict(tm.CALL_KWARGS[name], **kw)
    return pipe(prompt=["a red cat", "a blue dog"], num_images_per_prompt=2, num_inference_steps=2,
                generator=torch.Generator().manual_seed(0), output_type="latent", **args).images


@pytest.mark.parametrize("name", ["sd", "sana", "pixart", "flux"])
def test_folded_pipeline_equals_hooked(name, tiny_cache):
    pipe = tm.load_pipeline(name, tiny_cache)
    den = pipe.transformer if hasattr(pipe, "transformer") else pipe.unet
    sites = {s: d for s, d in find_sites(pipe).items() if not s.startswith("single.")}  # single blocks: hooks only
    snap = snapshot(den)
    no_cfg = dict(guidance_scale=1.0) if name != "flux" else {}
    for method in FOLDABLE:
        plan = tm.random_plan(sites, method, clip=False)
        with attach_steering(pipe, plan, 2.0):
            hooked = pipe_call(pipe, name, **no_cfg)
        with folded(pipe, plan, 2.0):
            assert tm.hook_residue(pipe) != []  # the CFG guard is a denoiser pre-hook
            fast = pipe_call(pipe, name, **no_cfg)
        torch.testing.assert_close(fast, hooked, atol=1e-5, rtol=1e-5)
        assert_restored(den, snap)
        assert tm.hook_residue(pipe) == []


def test_folding_refuses_cfg_unless_allowed(tiny_cache):
    pipe = tm.load_pipeline("sd", tiny_cache)
    plan = tm.random_plan(find_sites(pipe), "leace")
    with folded(pipe, plan, 1.0), pytest.raises(SteerError, match="unconditional half"):
        pipe_call(pipe, "sd")  # default guidance 7.5
    with folded(pipe, plan, 1.0, allow_cfg=True):
        pipe_call(pipe, "sd")
    assert tm.hook_residue(pipe) == []


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma2"])
@pytest.mark.parametrize("llm_site", ["self_attn", "mlp"])
def test_folded_lm_equals_hooked_and_unfold_is_exact(family, llm_site, tiny_cache):
    model, tok = tm.load_lm(family, tiny_cache)
    enc = tok(["what is a red cat", "tell me a story about the dog please"], return_tensors="pt", padding=True)
    snap = snapshot(model)
    base = model(**enc).logits
    for method in FOLDABLE:
        plan = tm.random_plan(find_sites(model, llm_site), method, shift=6.0, clip=False)
        with torch.no_grad(), attach_steering(model, plan, 3.0, llm_site=llm_site):
            hooked = model(**enc).logits
        handle = fold(model, plan, 3.0, llm_site=llm_site)
        with torch.no_grad():
            fast = model(**enc).logits
        unfold(handle)
        mask = enc["attention_mask"].bool()  # folding also edits padding rows; compare the valid positions
        torch.testing.assert_close(fast[mask], hooked[mask], atol=1e-5, rtol=1e-5)
        assert not torch.allclose(fast, base)
        assert_restored(model, snap)
    assert torch.equal(model(**enc).logits, base)


def test_what_cannot_be_folded_is_refused(tiny_cache):
    model, _ = tm.load_lm("llama", tiny_cache)
    sites = find_sites(model)
    with pytest.raises(ConfigError, match="clipping"):
        fold(model, tm.random_plan(sites, "casteer"), 1.0)  # casteer clips by default
    with pytest.raises(ConfigError, match="single-step"):
        fold(model, tm.random_plan(sites, "leace", steps=(0, 1)), 1.0)
    with pytest.raises(ConfigError, match="residual"):
        fold(model, tm.random_plan(find_sites(model, "residual"), "leace"), 1.0, llm_site="residual")
    with pytest.raises(ConfigError, match="one strength"):
        fold(model, tm.random_plan(sites, "leace"), torch.tensor([1.0, 2.0]))
    pipe = tm.load_pipeline("flux", tiny_cache)
    with pytest.raises(ConfigError, match="single.0"):
        fold(pipe, tm.random_plan(find_sites(pipe), "leace"), 1.0)
    handle = fold(model, tm.random_plan(sites, "leace"), 1.0)
    with pytest.raises(SteerError, match="already has a folded"):
        fold(model, tm.random_plan(sites, "midsteer"), 1.0)
    unfold(handle)
    unfold(handle)  # idempotent
    assert tm.hook_residue(model) == []


def test_folding_adds_a_bias_only_where_the_map_has_an_offset(tiny_cache):
    model, tok = tm.load_lm("llama", tiny_cache)  # o_proj has no bias
    enc = tok(["what is a red cat"], return_tensors="pt")
    sites = find_sites(model)
    layers = [m for n, m in model.named_modules() if n.endswith("self_attn.o_proj")]
    assert layers and all(m.bias is None for m in layers)
    cases = {"casteer": dict(clip=False), "leace zero_mu": dict(zero_mu=True), "leace": {}}
    for case, fit in cases.items():
        plan = tm.random_plan(sites, case.split()[0], **fit)
        with torch.no_grad(), attach_steering(model, plan, 2.0):
            hooked = model(**enc).logits
        with torch.no_grad(), folded(model, plan, 2.0):
            biases = [m.bias for m in layers]
            fast = model(**enc).logits
        torch.testing.assert_close(fast, hooked, atol=1e-5, rtol=1e-5)
        if case == "leace":  # μ ≠ 0: the offset β·u·vᵀμ must go somewhere
            assert all(b is not None and b.abs().max() > 0 for b in biases)
        else:
            assert all(b is None for b in biases), case
        assert all(m.bias is None for m in layers)
